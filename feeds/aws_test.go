package feeds

import (
	"context"
	"net/url"
	"testing"
)

// The standard chain gives the region and credentials; the options
// override the region per feed or sink; the endpoint goes to the clients.
func TestLoadAWSConfig(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCHAIN")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "eu-central-1")
	ctx := context.Background()
	cfg, err := LoadAWSConfig(ctx, AWSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil || creds.AccessKeyID != "AKIDCHAIN" || cfg.Region != "eu-central-1" {
		t.Fatalf("chain: region %q, key %q, %v", cfg.Region, creds.AccessKeyID, err)
	}
	cfg, err = LoadAWSConfig(ctx, AWSOptions{Region: "ap-south-1", Endpoint: "http://127.0.0.1:1"})
	if err != nil || cfg.Region != "ap-south-1" {
		t.Fatalf("override: region %q, %v", cfg.Region, err)
	}
	t.Setenv("AWS_REGION", "")
	if cfg, err = LoadAWSConfig(ctx, AWSOptions{}); err != nil || cfg.Region != DefaultAWSRegion {
		t.Fatalf("no region anywhere: %q, %v", cfg.Region, err)
	}
	if _, err := LoadAWSConfig(ctx, AWSOptions{Profile: "no-such-profile"}); err == nil {
		t.Fatal("an unknown profile loaded")
	}
}

func TestParseAWSQuery(t *testing.T) {
	q, _ := url.ParseQuery("region=us-west-2&endpoint=http%3A%2F%2F127.0.0.1%3A4567&profile=dev&other=1")
	o, err := ParseAWSQuery(q)
	if err != nil || o != (AWSOptions{Region: "us-west-2", Endpoint: "http://127.0.0.1:4567", Profile: "dev"}) || q.Encode() != "other=1" {
		t.Fatalf("%+v %v, left %q", o, err, q.Encode())
	}
	if o.BaseEndpoint() == nil || *o.BaseEndpoint() != "http://127.0.0.1:4567" || (AWSOptions{}).BaseEndpoint() != nil {
		t.Fatal("BaseEndpoint")
	}
	for _, raw := range []string{"endpoint=127.0.0.1:4567", "region=a&region=b", "endpoint=ftp%3A%2F%2Fx"} {
		q, _ := url.ParseQuery(raw)
		if _, err := ParseAWSQuery(q); err == nil {
			t.Errorf("%s: no error", raw)
		}
	}
}
