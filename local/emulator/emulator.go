// Package emulator runs local stand-ins for the AWS services the platform
// uses, without containers: DynamoDB Local (the Java server from Maven
// Central) for DynamoDB and DynamoDB Streams, and moto in server mode for
// everything else (SQS, S3, Kinesis, EventBridge, ...).
//
// Start picks one of three modes from the environment:
//
//   - AWS_ENDPOINT_URL set: nothing is started; every service uses that URL
//     (LocalStack, or an emulator someone else runs). ModeEndpoint.
//   - CMS_USE_AWS=1: nothing is started; AWSConfig is the default AWS
//     configuration (credential chain, region, endpoints). ModeAWS.
//   - otherwise: DynamoDB Local and moto_server are installed into the repo
//     cache on first use (local/scripts/install-emulators.sh) and started as
//     child processes on free loopback ports. ModeLocal.
//
// In ModeLocal the children run in their own process groups, so a Ctrl-C in
// the terminal (SIGINT to the foreground process group) does not reach them:
// the caller handles the signal and calls Close, which ends both process
// groups and waits for them. On Linux the children also get SIGKILL from the
// kernel when the Go process dies without calling Close (crash, os.Exit,
// SIGKILL, unhandled SIGINT): see PR_SET_PDEATHSIG. On other systems a Go
// process that dies without Close leaves them running.
//
// Tests use ForTest and Main (testing.go): one stack per test binary.
//
// The package depends on no other package of the project; see
// docs/local-emulators.md for versions, ports and start-up times.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
)

// Environment variables read by Start and AWSConfig.
const (
	EnvEndpointURL = "AWS_ENDPOINT_URL" // use this endpoint for every service; start nothing
	EnvUseAWS      = "CMS_USE_AWS"      // "1": real AWS through the default configuration
	EnvCacheDir    = "CMS_CACHE_DIR"    // emulator cache (default <repo>/.cache)
	EnvRegion      = "AWS_REGION"       // region (default DefaultRegion)
	EnvJavaOpts    = "CMS_DYNAMODB_JAVA_OPTS"
)

// DefaultRegion is the region of ModeLocal and ModeEndpoint when AWS_REGION is unset.
const DefaultRegion = "us-east-1"

// Static credentials of ModeLocal and ModeEndpoint. The emulators accept any.
const (
	TestAccessKeyID     = "test"
	TestSecretAccessKey = "test"
)

// Mode tells where a Stack's endpoints come from.
type Mode string

const (
	// ModeLocal: DynamoDB Local and moto_server started by this package.
	ModeLocal Mode = "local"
	// ModeEndpoint: AWS_ENDPOINT_URL for every service; nothing started.
	ModeEndpoint Mode = "endpoint"
	// ModeAWS: real AWS (CMS_USE_AWS=1); nothing started, no endpoint overrides.
	ModeAWS Mode = "aws"
	// ModeLocalStack: a LocalStack container started through testcontainers-go
	// (CMS_EMULATOR=localstack, a reachable Docker engine, and the localstack
	// build tag); every service uses it.
	ModeLocalStack Mode = "localstack"
)

// EnvEmulator selects the emulator: "localstack" runs LocalStack in Docker
// through testcontainers-go instead of DynamoDB Local and moto.
const EnvEmulator = "CMS_EMULATOR"

// Options configures Start. The zero value is ready to use.
type Options struct {
	// CacheDir holds the installed emulators. Default: $CMS_CACHE_DIR, else
	// .cache at the repository root (the directory whose go.mod declares
	// github.com/channelbilling/cms, found by walking up from the working
	// directory).
	CacheDir string
	// Log receives progress lines (installation, start-up); Start serialises
	// its writes. nil: os.Stderr.
	Log io.Writer
	// StartTimeout bounds the wait for each emulator to answer once started
	// (installation is bounded by ctx only). Default: 60s.
	StartTimeout time.Duration
}

// Stack is a running (or configured) set of emulators.
type Stack struct {
	Mode Mode
	// DynamoDBEndpoint serves DynamoDB and DynamoDB Streams, e.g. "http://127.0.0.1:41234".
	// Empty in ModeAWS.
	DynamoDBEndpoint string
	// AWSEndpoint serves every other service (moto_server in ModeLocal).
	// Empty in ModeAWS.
	AWSEndpoint string
	// Region is the region AWSConfig uses ("" in ModeAWS without AWS_REGION:
	// then the default configuration decides).
	Region string
	// DynamoDBLocalVersion and MotoVersion are the installed versions (ModeLocal only).
	DynamoDBLocalVersion string
	MotoVersion          string

	procs     []*process
	container func() error // terminates the LocalStack container (ModeLocalStack)
	closeOnce sync.Once
	closeErr  error
}

// Start starts the emulators (ModeLocal) or describes the configured
// endpoint (ModeEndpoint, ModeAWS); see the package documentation. ctx bounds
// the installation and the start-up; the processes themselves live until
// Close. The caller must call Close, also on error paths after Start returned
// a Stack.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	var logw io.Writer = &lockedWriter{w: opts.Log}
	if opts.Log == nil {
		logw = &lockedWriter{w: os.Stderr}
	}
	if useAWS() {
		return &Stack{Mode: ModeAWS, Region: os.Getenv(EnvRegion)}, nil
	}
	if u := strings.TrimSpace(os.Getenv(EnvEndpointURL)); u != "" {
		return &Stack{Mode: ModeEndpoint, DynamoDBEndpoint: u, AWSEndpoint: u, Region: region()}, nil
	}
	if os.Getenv(EnvEmulator) == string(ModeLocalStack) {
		return startLocalStack(ctx, logw)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}

	began := time.Now()
	inst, err := ensureInstalled(ctx, opts.CacheDir, logw)
	if err != nil {
		return nil, err
	}

	s := &Stack{
		Mode:                 ModeLocal,
		Region:               region(),
		DynamoDBLocalVersion: inst.dynamoDBVersion,
		MotoVersion:          inst.motoVersion,
	}
	type result struct {
		p   *process
		url string
		err error
	}
	specs := []launchSpec{dynamoDBLocalSpec(inst), motoSpec(inst)}
	results := make([]result, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, url, err := launch(ctx, sp, timeout, logw)
			results[i] = result{p, url, err}
		}()
	}
	wg.Wait()

	var errs []error
	for _, r := range results {
		if r.p != nil {
			s.procs = append(s.procs, r.p)
		}
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if len(errs) > 0 {
		_ = s.Close()
		return nil, errors.Join(errs...)
	}
	s.DynamoDBEndpoint = results[0].url
	s.AWSEndpoint = results[1].url
	fmt.Fprintf(logw, "emulator: DynamoDB Local %s at %s, moto %s at %s (ready in %.1fs)\n",
		s.DynamoDBLocalVersion, s.DynamoDBEndpoint, s.MotoVersion, s.AWSEndpoint, time.Since(began).Seconds())
	return s, nil
}

// Close stops the emulators started by Start: SIGTERM to each process group,
// SIGKILL after a grace period, and waits for them. It is safe to call more
// than once and on a nil Stack. It reports an emulator that had exited on
// its own before Close.
func (s *Stack) Close() error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		errs := make([]error, len(s.procs))
		var wg sync.WaitGroup
		for i, p := range s.procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = p.stop(3 * time.Second)
			}()
		}
		wg.Wait()
		if s.container != nil {
			errs = append(errs, s.container())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// AWSConfig returns an aws.Config for the stack:
//
//   - ModeLocal and ModeEndpoint: static credentials test/test, Region, no
//     shared config or credentials files (~/.aws is ignored), BaseEndpoint =
//     AWSEndpoint for every service, and DynamoDBEndpoint for the DynamoDB and
//     DynamoDB Streams clients made from it (see DynamoDBOptions).
//   - ModeAWS: config.LoadDefaultConfig(ctx, optFns...) unchanged.
//
// optFns are applied after the stack's own options. S3 clients need path-style
// addressing unless the endpoint is an IP address: s3.NewFromConfig(cfg,
// func(o *s3.Options) { o.UsePathStyle = true }).
func (s *Stack) AWSConfig(ctx context.Context, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
	if s.Mode == ModeAWS {
		return config.LoadDefaultConfig(ctx, optFns...)
	}
	if strings.EqualFold(os.Getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		// The SDK would then ignore the DynamoDB endpoint below and send
		// DynamoDB calls to moto, which emulates DynamoDB too: refuse.
		return aws.Config{}, errors.New("emulator: AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true disables the per-service endpoints; unset it")
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(s.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(TestAccessKeyID, TestSecretAccessKey, "")),
		config.WithSharedConfigFiles([]string{}),
		config.WithSharedCredentialsFiles([]string{}),
		config.WithBaseEndpoint(s.AWSEndpoint),
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(opts, optFns...)...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("emulator: load AWS config: %w", err)
	}
	if s.DynamoDBEndpoint != "" && s.DynamoDBEndpoint != s.AWSEndpoint {
		// Service clients look up a per-service base endpoint in
		// cfg.ConfigSources (the mechanism behind AWS_ENDPOINT_URL_DYNAMODB)
		// after applying cfg.BaseEndpoint. Ours goes first so it wins over
		// the environment's.
		cfg.ConfigSources = append([]interface{}{serviceEndpoints{
			"DynamoDB":         s.DynamoDBEndpoint,
			"DynamoDB Streams": s.DynamoDBEndpoint,
		}}, cfg.ConfigSources...)
	}
	return cfg, nil
}

// DynamoDBOptions sets the DynamoDB client's BaseEndpoint to DynamoDBEndpoint:
//
//	db := dynamodb.NewFromConfig(cfg, stack.DynamoDBOptions())
//
// A client made from AWSConfig's cfg already gets that endpoint; the option
// makes it explicit and also covers an aws.Config built elsewhere. In ModeAWS
// it does nothing.
func (s *Stack) DynamoDBOptions() func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		if s.Mode != ModeAWS && s.DynamoDBEndpoint != "" {
			o.BaseEndpoint = aws.String(s.DynamoDBEndpoint)
		}
	}
}

// DynamoDBStreamsOptions is DynamoDBOptions for the DynamoDB Streams client
// (DynamoDB Local serves the Streams API on the same endpoint).
func (s *Stack) DynamoDBStreamsOptions() func(*dynamodbstreams.Options) {
	return func(o *dynamodbstreams.Options) {
		if s.Mode != ModeAWS && s.DynamoDBEndpoint != "" {
			o.BaseEndpoint = aws.String(s.DynamoDBEndpoint)
		}
	}
}

// serviceEndpoints maps an SDK service ID ("DynamoDB") to a base endpoint. It
// satisfies the SDK's configsources.ServiceBaseEndpointProvider.
type serviceEndpoints map[string]string

func (m serviceEndpoints) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	v, ok := m[sdkID]
	return v, ok, nil
}

// lockedWriter serialises writes: the emulators start side by side and both
// report progress to Options.Log, which need not be safe for concurrent use.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func useAWS() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv(EnvUseAWS))) {
	case "1", "true", "yes":
		return true
	}
	return false
}

func region() string {
	if r := os.Getenv(EnvRegion); r != "" {
		return r
	}
	return DefaultRegion
}
