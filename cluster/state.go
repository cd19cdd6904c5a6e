package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// State is where the operator state of a group's partitions lives, so that
// any member can load it: the checkpoint of partition p is an object of the
// group's object store, and a key of the group's state bucket points at the
// newest one with its epoch and its floor (the highest stream sequence of
// the partition whose effects the checkpoint holds).
//
// Object names are unique per checkpoint ("p<p>-e<epoch>-f<floor>"), so an
// object is never overwritten, and the pointer moves by compare-and-set
// only to a checkpoint of an epoch at least the pointer's: a fenced old
// owner that wakes up can neither replace its successor's checkpoint nor
// move the pointer back (Save checks its fence before both writes, too).
type State struct {
	kv  jetstream.KeyValue
	obj jetstream.ObjectStore
	// The pointers are read through the stream's leader (get), not with
	// kv.Get: nc, the request subject, and the subject prefix of the keys.
	nc                *nats.Conn
	getSubj, keySubjs string
}

// StateBucket is the name of a group's state bucket and object store.
func StateBucket(group string) string { return "qstream_" + group + "_state" }

// CheckpointRef is the pointer to a partition's newest checkpoint.
type CheckpointRef struct {
	Partition int    `json:"partition"`
	Epoch     uint64 `json:"epoch"`
	Floor     uint64 `json:"floor"`
	Object    string `json:"object"`
	Size      int    `json:"size"`
	Owner     string `json:"owner"`
	UnixNs    int64  `json:"unix_ns"`
}

// OpenState creates (or opens) the group's state bucket and object store.
func OpenState(ctx context.Context, js jetstream.JetStream, group string, replicas int) (*State, error) {
	if !ValidName(group, 32) {
		return nil, fmt.Errorf("%w: group %q", ErrConfig, group)
	}
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := ensure(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, StateBucket(group)) },
		func(ctx context.Context) (jetstream.KeyValue, error) {
			return js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      StateBucket(group),
				Description: "qstream partition checkpoints: pointers",
				History:     1,
				Storage:     jetstream.FileStorage,
				Replicas:    replicas,
			})
		})
	if err != nil {
		return nil, fmt.Errorf("cluster: state bucket: %w", err)
	}
	obj, err := ensure(ctx, func(ctx context.Context) (jetstream.ObjectStore, error) {
		return js.ObjectStore(ctx, StateBucket(group))
	},
		func(ctx context.Context) (jetstream.ObjectStore, error) {
			return js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
				Bucket:      StateBucket(group),
				Description: "qstream partition checkpoints",
				Storage:     jetstream.FileStorage,
				Replicas:    replicas,
			})
		})
	if err != nil {
		return nil, fmt.Errorf("cluster: state object store: %w", err)
	}
	b := StateBucket(group)
	return &State{kv: kv, obj: obj, nc: js.Conn(),
		getSubj: apiPrefix(js.Options()) + "STREAM.MSG.GET.KV_" + b, keySubjs: "$KV." + b + "."}, nil
}

// apiPrefix is the JetStream API subject prefix of js's options, as
// jetstream.New, NewWithAPIPrefix and NewWithDomain set it.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix == "":
		return jetstream.DefaultAPIPrefix
	case strings.HasSuffix(o.APIPrefix, "."):
		return o.APIPrefix
	}
	return o.APIPrefix + "."
}

// Load returns partition p's newest checkpoint: its pointer and its bytes;
// ok is false when the partition has none (it starts empty, from the
// beginning of the stream).
func (s *State) Load(ctx context.Context, p int) (ref CheckpointRef, data []byte, ok bool, err error) {
	val, _, err := s.get(ctx, partitionKey(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ref, nil, false, nil
	}
	if err != nil {
		return ref, nil, false, fmt.Errorf("cluster: partition %d: checkpoint pointer: %w", p, err)
	}
	if err := json.Unmarshal(val, &ref); err != nil || ref.Partition != p || ref.Object == "" {
		return ref, nil, false, fmt.Errorf("cluster: partition %d: checkpoint pointer %q is not valid (%v)", p, val, err)
	}
	data, err = s.obj.GetBytes(ctx, ref.Object)
	if err != nil {
		return ref, nil, false, fmt.Errorf("cluster: partition %d: checkpoint %s: %w", p, ref.Object, err)
	}
	if len(data) != ref.Size {
		return ref, nil, false, fmt.Errorf("cluster: partition %d: checkpoint %s has %d bytes, its pointer says %d", p, ref.Object, len(data), ref.Size)
	}
	return ref, data, true, nil
}

// Save stores data as partition p's checkpoint of epoch with floor and
// moves the pointer to it, if fence is still valid and no checkpoint of a
// later epoch is there; it deletes the checkpoint the pointer held before.
// It returns ErrFenced when the fence passed or a later epoch owns the
// pointer.
func (s *State) Save(ctx context.Context, p int, epoch, floor uint64, owner string, data []byte, fence *Fence) (CheckpointRef, error) {
	ref := CheckpointRef{Partition: p, Epoch: epoch, Floor: floor, Size: len(data), Owner: owner, UnixNs: time.Now().UnixNano(),
		Object: "p" + strconv.Itoa(p) + "-e" + strconv.FormatUint(epoch, 10) + "-f" + strconv.FormatUint(floor, 10)}
	if fence != nil && !fence.Valid() {
		return ref, ErrFenced
	}
	if _, err := s.obj.PutBytes(ctx, ref.Object, data); err != nil {
		return ref, fmt.Errorf("cluster: partition %d: put checkpoint: %w", p, err)
	}
	var prev CheckpointRef
	val, rev, err := s.get(ctx, partitionKey(p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return ref, fmt.Errorf("cluster: partition %d: checkpoint pointer: %w", p, err)
	default:
		if err := json.Unmarshal(val, &prev); err != nil {
			return ref, fmt.Errorf("cluster: partition %d: checkpoint pointer: %w", p, err)
		}
	}
	if prev.Epoch > epoch || (fence != nil && !fence.Valid()) {
		if prev.Object != ref.Object {
			_ = s.obj.Delete(ctx, ref.Object)
		}
		return ref, ErrFenced
	}
	val, _ = json.Marshal(ref)
	if rev == 0 {
		_, err = s.kv.Create(ctx, partitionKey(p), val)
	} else {
		_, err = s.kv.Update(ctx, partitionKey(p), val, rev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Refused: the pointer did not move (another writer moved it
			// between our read and write), so the object is nobody's.
			if prev.Object != ref.Object {
				_ = s.obj.Delete(ctx, ref.Object)
			}
			return ref, ErrFenced
		}
		// No answer (a timeout, a leader election): the pointer may have
		// moved to the object, so the object stays (if it did not, it is
		// an orphan a later save does not see; that is the cost of never
		// pointing at nothing).
		return ref, fmt.Errorf("cluster: partition %d: move checkpoint pointer (its outcome unknown; the checkpoint object is kept): %w", p, err)
	}
	if prev.Object != "" && prev.Object != ref.Object {
		if err := s.obj.Delete(ctx, prev.Object); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return ref, fmt.Errorf("cluster: partition %d: checkpoint %s saved; deleting %s: %w", p, ref.Object, prev.Object, err)
		}
	}
	return ref, nil
}

// Refs returns the pointers of every partition that has a checkpoint.
func (s *State) Refs(ctx context.Context, partitions int) (map[int]CheckpointRef, error) {
	out := map[int]CheckpointRef{}
	for p := range partitions {
		val, _, err := s.get(ctx, partitionKey(p))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var ref CheckpointRef
		if err := json.Unmarshal(val, &ref); err != nil {
			return nil, err
		}
		out[p] = ref
	}
	return out, nil
}

// get returns the value and revision of key's newest entry in the state
// bucket, or jetstream.ErrKeyNotFound, read through the bucket stream's
// leader (the STREAM.MSG.GET API). kv.Get makes a direct get instead
// (CreateKeyValue turns them on), which any replica answers, and one that
// has just restarted and not caught up answers with an older entry (seen on
// the test cluster: revision 11 right after the Update of revision 13):
// Load would then start a new owner from an older checkpoint, or from
// none, and Save would read an old revision and take its refused update
// for a fence. Turning direct gets off on the stream instead (UpdateStream
// at start-up) was tried: through the network-partition test's proxies the
// update went unanswered, and a member that cannot change the stream must
// not fail to start. jetstream's own Stream.GetLastMsgForSubject is no way
// round it: it makes a direct get too when the stream allows them. A
// pointer is read once per load and per save.
func (s *State) get(ctx context.Context, key string) (val []byte, rev uint64, err error) {
	req, _ := json.Marshal(struct {
		LastBySubj string `json:"last_by_subj"`
	}{s.keySubjs + key})
	msg, err := s.nc.RequestWithContext(ctx, s.getSubj, req)
	if err != nil {
		return nil, 0, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"` // base64 in the JSON, as encoding/json decodes []byte
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", key, err)
	}
	switch {
	case resp.Error != nil && jetstream.ErrorCode(resp.Error.ErrCode) == jetstream.JSErrCodeMessageNotFound:
		return nil, 0, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, 0, fmt.Errorf("get %s: %s (code %d, %d)", key, resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
	case resp.Message == nil:
		return nil, 0, fmt.Errorf("get %s: %w", key, jetstream.ErrInvalidJetStreamResponse)
	}
	if m := resp.Message; len(m.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Hdrs)
		if err != nil {
			return nil, 0, fmt.Errorf("get %s: %w", key, err)
		}
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil, 0, jetstream.ErrKeyNotFound
		}
	}
	return resp.Message.Data, resp.Message.Seq, nil
}

// ensure opens a bucket, creating it if it is missing. Concurrent creations
// of one replicated stream can go unanswered on nats-server 2.9 (the losers
// of the race get no reply), so creation is bounded and retried: whoever
// lost finds the winner's bucket on the next lookup.
func ensure[T any](ctx context.Context, lookup func(context.Context) (T, error), create func(context.Context) (T, error)) (T, error) {
	var zero T
	var err error
	for attempt := 0; ; attempt++ {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var b T
		b, err = lookup(lctx)
		cancel()
		if err == nil {
			return b, nil
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		b, err = create(cctx)
		cancel()
		if err == nil {
			return b, nil
		}
		if ctx.Err() != nil {
			return zero, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		}
		time.Sleep(time.Duration(50+attempt*50) * time.Millisecond)
	}
}
