# qstream — see README.md. Two commands set everything up on a fresh machine:
#   make run    the engine on its embedded defaults (synthetic feed, local WAL, status line)
#   make test   every test, starting the local servers the integration tests use
GO        ?= go
PKGS      ?= ./...
# Packages whose tests always run under the race detector in `make test`.
RACE_PKGS ?= ./ring/... ./engine/...
STATICCHECK_VERSION ?= v0.8.2
BENCHTIME ?= 1s
BENCHCOUNT ?= 3
FUZZTIME  ?= 30s

.PHONY: FORCE all build run test test-race test-unit services nats-cluster test-failover bench-group bench bench-md bench-e2e bench-throughput bench-aws bench-durability fuzz lint stress crash-test clean

all: build

build:
	$(GO) build -o bin/qstream ./cmd/qstream

run: build
	./bin/qstream run

# `make test`: start (installing if needed) the servers integration tests talk to,
# then the whole suite; ring and engine under the race detector.
test: services
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 40m $(PKGS)
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

services:
	./scripts/services.sh

# The three-server JetStream cluster of the failover tests (ports 4241-4243;
# services starts it too), and the tests of its helpers: SIGKILLs of stream
# leaders, the partition proxy.
nats-cluster:
	./scripts/nats-cluster.sh start

test-failover: nats-cluster
	$(GO) test -count=1 -timeout 20m ./internal/natscluster/... ./internal/netproxy/... ./cluster/...
	$(GO) test -count=1 -timeout 20m -run 'TestGroup' -v ./cmd/qstream/

# The scale-out group on the three-server cluster: throughput of 1, 2 and 3
# members over one pre-published stream, and takeover after kill -9
# (bench/results-group.md, quoted in BENCHMARKS.md).
bench-group: nats-cluster
	QSTREAM_GROUP_BENCH=1 $(GO) test -count=1 -timeout 30m -run 'TestGroupBench' -v ./cmd/qstream/

test-race: services
	$(GO) test -count=1 -race -timeout 60m $(PKGS)

# Benchmarks, then BENCHMARKS.md. The raw output goes to bench/results.txt
# (between benchmd's stamps: the machine, the time, the command) and its
# tables (medians, same-run ratios against the baselines) to bench/results.md;
# then bench-e2e and bench-throughput; then bench-md rewrites the generated
# blocks of BENCHMARKS.md from those result files. Run it on a quiet machine.
BENCH_CMD = make bench BENCHTIME=$(BENCHTIME) BENCHCOUNT=$(BENCHCOUNT) (go test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) $(PKGS))
bench: build bin/benchmd
	./bin/benchmd -stamp start -cmd "$(BENCH_CMD)" > bench/results.txt
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) $(PKGS) | tee -a bench/results.txt
	./bin/benchmd -stamp end >> bench/results.txt
	./bin/benchmd -in bench/results.txt -cmd "make bench BENCHTIME=$(BENCHTIME) BENCHCOUNT=$(BENCHCOUNT)" > bench/results.md
	$(MAKE) bench-e2e bench-throughput
	$(MAKE) bench-md

# BENCHMARKS.md's generated blocks (issue 12's must-show figures, the machine
# and commands, the package tables, the e2e table and plot, the throughput
# table) from the result files of the last make bench, as they are; the
# hand-written text around the blocks is kept byte for byte.
bench-md: bin/benchmd
	./bin/benchmd -update BENCHMARKS.md -results bench/results.txt -e2e bench/results-e2e.json \
		-throughput bench/results-throughput.json -svg bench/e2e-latency.svg

bin/benchmd: FORCE
	$(GO) build -o bin/benchmd ./bench/benchmd

# The end-to-end latency and throughput suites (`qstream bench`): tables on
# stdout, and for BENCHMARKS.md bench/results-e2e.md with its plot
# bench/e2e-latency.svg, bench/results-throughput.md, and the JSON reports
# (`qstream bench e2e --from-json bench/results-e2e.json --svg ...` redraws).
# The load generator busy-waits (--pace spin): run on a quiet machine.
E2E_RATES    ?= 10k,50k,100k,500k
E2E_WAITS    ?= park,yield
E2E_DURATION ?= 2s
E2E_REPEATS  ?= 3
E2E_PACE     ?= spin
TP_SHARDS    ?= 1,2
TP_REPEATS   ?= 5
bench-e2e: build
	./bin/qstream bench e2e --rates $(E2E_RATES) --waits $(E2E_WAITS) --duration $(E2E_DURATION) --repeats $(E2E_REPEATS) --pace $(E2E_PACE) \
		--json-file bench/results-e2e.json --md bench/results-e2e.md --svg bench/e2e-latency.svg

bench-throughput: build
	./bin/qstream bench throughput --shards $(TP_SHARDS) --repeats $(TP_REPEATS) --json-file bench/results-throughput.json --md bench/results-throughput.md

# Throughput into and out of the AWS connectors against the local stand-ins
# (kinesalite, fauxqs, goaws, s3rver: make services), each with its baseline
# of bare SDK calls; raw output in bench/results-aws.txt.
AWS_BENCH_N ?= 20000
bench-aws: services
	{ $(GO) test -run '^$$' -bench 'Kinesis|SQS' -benchmem -benchtime $(AWS_BENCH_N)x -count $(BENCHCOUNT) ./feeds; \
	  $(GO) test -run '^$$' -bench 'SNS' -benchmem -benchtime $(AWS_BENCH_N)x -count $(BENCHCOUNT) ./sinks; \
	  $(GO) test -run '^$$' -bench 'S3' -benchmem -benchtime $$(( $(AWS_BENCH_N) * 20 ))x -count $(BENCHCOUNT) ./sinks; } | tee bench/results-aws.txt

# Longer randomized runs than `make test` affords.
stress:
	QSTREAM_STRESS=1 $(GO) test -count=1 -race -timeout 60m -run 'Stress' ./ring/... ./engine/...

# The crash harnesses: `qstream run` with the WAL on, killed with SIGKILL at
# random moments and at named failpoints (before a WAL write, before a sync,
# after a sync before the ack, during a checkpoint) and restarted until it
# completes: on the synthetic feed over 1M messages, compared with an
# uninterrupted run (cmd/qstream/crash_test.go); on the TCP feed (JSON lines,
# binary frames) and the webhook, restarted on the same address and data
# directory while an at-least-once client resends, compared with `qstream
# replay` of its messages (crash_feeds_test.go); and the JetStream end-to-end
# test; and the sinks' harness (NATS, ClickHouse and Redis sinks, the NATS
# server down across two kills: sinks_crash_test.go); the Kinesis and SQS feeds
# against kinesalite and fauxqs (crash_aws_test.go); and two streams of one
# configuration plus one started over HTTP, each compared with an
# uninterrupted run (streams_test.go); and the scale-out group's (three
# members on the NATS cluster, one killed at random, group_test.go). `make
# test` runs their short forms (5 kills each for the feeds, 4 for the sinks,
# 10 for the group); this runs CRASH_KILLS in each of the seven, 3/5 of it in
# the streams one and CRASH_KILLS in the group's.
CRASH_KILLS ?= 50
crash-test: services
	QSTREAM_CRASH_KILLS=$(CRASH_KILLS) QSTREAM_SINK_CRASH_KILLS=$(CRASH_KILLS) QSTREAM_GROUP_KILLS=$(CRASH_KILLS) $(GO) test -count=1 -timeout 90m -v \
		-run '^(TestCrashRecovery|TestCrashTCPLines|TestCrashTCPFrames|TestCrashWebhook|TestJetStreamTwoProcessesExactlyOnce|TestCrashSinksExactlyOnce|TestCrashKinesis|TestCrashSQS|TestStreamsCrashRecovery|TestGroupKillNine)$$' ./cmd/qstream

# The durability figures of BENCHMARKS.md: durable records/s per sync policy
# and commit latency end to end through the engine, recovery replay records/s
# and restart-to-live for a WAL of 10M records (about 1.6 GB, written under
# QSTREAM_BENCH_DIR or $$TMPDIR), and the WAL's own benchmarks.
bench-durability:
	QSTREAM_BENCH_RECORDS=10000000 $(GO) test -run '^$$' -bench 'DurablePublish|DurableCommitLatency|RecoveryReplay|RestartToLive' -benchmem -benchtime $(BENCHTIME) ./engine
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./wal

# Each fuzz target for FUZZTIME.
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

clean:
	rm -rf bin

FORCE:
