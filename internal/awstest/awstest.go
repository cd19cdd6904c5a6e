// Package awstest points tests at the local AWS stand-ins that
// scripts/services.sh starts: kinesalite (Kinesis), fauxqs (SQS: goaws speaks
// only the query protocol, which the SDK's SQS client no longer does), goaws
// (SNS) and s3rver (S3). A test that cannot reach its server fails with a message
// saying how to start it; nothing here mocks the SDK.
package awstest

import (
	"net"
	"os"
	"testing"
	"time"
)

// The local servers' endpoints (scripts/services.sh), overridable with
// QSTREAM_KINESIS_ENDPOINT, QSTREAM_SQS_ENDPOINT, QSTREAM_SNS_ENDPOINT and
// QSTREAM_S3_ENDPOINT.
const (
	KinesisAddr = "127.0.0.1:4567"
	GoAWSAddr   = "127.0.0.1:4100"
	FauxqsAddr  = "127.0.0.1:4566"
	S3Addr      = "127.0.0.1:4568"
)

// Credentials of the local servers: s3rver accepts only its own key pair;
// kinesalite and goaws accept any.
const (
	AccessKeyID     = "S3RVER"
	SecretAccessKey = "S3RVER"
	Region          = "us-east-1"
)

// Env returns the AWS_* variables that make the standard configuration
// chain sign for the local servers (for a child process's environment).
func Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + SecretAccessKey,
		"AWS_REGION=" + Region, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}

// SetEnv sets Env in the test's environment (t.Setenv: not for parallel
// tests).
func SetEnv(t testing.TB) {
	t.Helper()
	for _, kv := range Env() {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				t.Setenv(kv[:i], kv[i+1:])
				break
			}
		}
	}
}

// Kinesis returns kinesalite's endpoint, failing t if it does not answer.
func Kinesis(t testing.TB) string {
	return endpoint(t, "QSTREAM_KINESIS_ENDPOINT", KinesisAddr, "kinesalite (Kinesis)")
}

// SQS returns fauxqs's endpoint, failing t if it does not answer.
func SQS(t testing.TB) string {
	return endpoint(t, "QSTREAM_SQS_ENDPOINT", FauxqsAddr, "fauxqs (SQS)")
}

// SNS returns goaws's endpoint, failing t if it does not answer.
func SNS(t testing.TB) string {
	return endpoint(t, "QSTREAM_SNS_ENDPOINT", GoAWSAddr, "goaws (SNS)")
}

// S3 returns s3rver's endpoint, failing t if it does not answer.
func S3(t testing.TB) string { return endpoint(t, "QSTREAM_S3_ENDPOINT", S3Addr, "s3rver (S3)") }

func endpoint(t testing.TB, env, addr, what string) string {
	t.Helper()
	ep := "http://" + addr
	if v := os.Getenv(env); v != "" {
		ep = v
		addr = v
		if len(addr) > 7 && addr[:7] == "http://" {
			addr = addr[7:]
		}
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("%s is not reachable at %s (%v): start the local servers with `make services` (scripts/services.sh, as root the first time: it installs them), or set %s", what, addr, err, env)
	}
	c.Close()
	return ep
}
