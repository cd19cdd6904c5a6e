package feeds

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// AWSOptions override, for one feed or sink, what the standard AWS
// configuration chain (config.LoadDefaultConfig: the AWS_* environment
// variables, the shared config and credentials files, SSO, web identity,
// the instance metadata service) gives. The zero value takes everything
// from the chain. Credentials are never options: they come from the chain
// only, so that no secret is ever a flag or a URI.
type AWSOptions struct {
	// Region overrides the chain's region (AWS_REGION, the profile's).
	Region string
	// Endpoint is the base URL of the service, overriding AWS's (a local
	// server in tests: "http://127.0.0.1:4567"); empty means AWS's.
	Endpoint string
	// Profile selects a shared-config profile (else AWS_PROFILE, else
	// "default").
	Profile string
}

// DefaultAWSRegion is the region used when neither the options nor the
// chain name one (a local endpoint needs some region to sign with).
const DefaultAWSRegion = "us-east-1"

// AWSQueryParams are the URI query parameters (and the suffixes of the
// per-feed flags) that ParseAWSQuery reads.
var AWSQueryParams = []string{"region", "endpoint", "profile"}

// ParseAWSQuery reads the AWSOptions of a feed or sink URI's query
// (region=, endpoint=, profile=) and removes them from q, so that the
// caller can reject what is left over. An endpoint must be an http or
// https URL.
func ParseAWSQuery(q url.Values) (AWSOptions, error) {
	var o AWSOptions
	for _, k := range AWSQueryParams {
		if !q.Has(k) {
			continue
		}
		if len(q[k]) > 1 {
			return o, fmt.Errorf("aws: %s given %d times", k, len(q[k]))
		}
		v := q.Get(k)
		switch k {
		case "region":
			o.Region = v
		case "endpoint":
			o.Endpoint = v
		case "profile":
			o.Profile = v
		}
		q.Del(k)
	}
	return o, o.Validate()
}

// Validate checks the endpoint's form.
func (o AWSOptions) Validate() error {
	if o.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(o.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("aws: endpoint %q is not an http:// or https:// URL", o.Endpoint)
	}
	return nil
}

// String describes the options for start-up lines (no secrets: there are
// none in them).
func (o AWSOptions) String() string {
	var parts []string
	if o.Region != "" {
		parts = append(parts, "region "+o.Region)
	}
	if o.Endpoint != "" {
		parts = append(parts, "endpoint "+o.Endpoint)
	}
	if o.Profile != "" {
		parts = append(parts, "profile "+o.Profile)
	}
	if len(parts) == 0 {
		return "the AWS configuration chain"
	}
	return strings.Join(parts, ", ")
}

// LoadAWSConfig loads the standard configuration chain with o's overrides.
// The endpoint is not part of the returned aws.Config: each service
// client takes it as its BaseEndpoint (see the feeds' and sinks'
// constructors), so one Config serves a client of each service.
func LoadAWSConfig(ctx context.Context, o AWSOptions) (aws.Config, error) {
	if err := o.Validate(); err != nil {
		return aws.Config{}, err
	}
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.Profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws: configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultAWSRegion
	}
	return cfg, nil
}

// BaseEndpoint returns o.Endpoint for a client's BaseEndpoint option: nil
// (AWS's endpoint) when it is empty.
func (o AWSOptions) BaseEndpoint() *string {
	if o.Endpoint == "" {
		return nil
	}
	return aws.String(o.Endpoint)
}
