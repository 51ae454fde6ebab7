// Package events_test feeds every sample event of events/<function>/ to that function's handler,
// built the way the function's main builds it, against the emulators (local/emulator): DynamoDB
// Local and moto, or AWS_ENDPOINT_URL. The shape of each sample is checked offline by infra's
// tests (infra/repo_test.go); here each one must be answered as a deployed function would.
//
// The samples use fixed ids (a distributor, two partners, two users). The test creates those
// entities and users, then swaps the fixed ids for the created ones in every sample it feeds.
// The samples' bearer token is a placeholder: the authorizer must refuse it, and accept a real
// one put in its place.
package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/local/feeders"
	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/authorizer"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/identity"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/tablestore"
)

// The fixed ids of the samples.
const (
	sampleAdmin       = "usr_01kmz8x2q7j5c3v9w4r6t8y0ab"
	samplePartnerUser = "usr_01kmz9c4d2f6g8h0j2k4m6n8pq"
	sampleDistributor = "dst_01kmz6r8s0t2v4w6x8y0z2a4bc"
	samplePartner     = "prt_01kmz7a1b3c5d7e9f1g3h5j7kq"
	sampleOtherPrt    = "prt_01kmz7b2c4d6e8f0g2h4j6k8mr" // suspended by partners/suspend.json
	partnerPassword   = "correct-horse-battery-staple"
)

func TestMain(m *testing.M) { os.Exit(emulator.Main(m, nil)) }

// fixture is the deployment the samples are fed to.
type fixture struct {
	cfg      app.Config
	awsCfg   aws.Config
	deps     *app.Deps
	ids      *strings.Replacer // sample ids -> created ids
	partner  access.Principal  // the partner admin of the samples
	handlers map[string]*httpapi.API
	billingQ feeders.Queue // billing_test.go
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func quiet() *slog.Logger {
	if os.Getenv("CMS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// setup returns the shared fixture, building it on first use.
func setup(t *testing.T) *fixture {
	t.Helper()
	stack := emulator.ForTest(t)
	fixOnce.Do(func() { fix, fixErr = build(stack) })
	if fixErr != nil {
		t.Fatalf("fixture: %v", fixErr)
	}
	return fix
}

func build(stack *emulator.Stack) (*fixture, error) {
	ctx := context.Background()
	awsCfg, err := stack.AWSConfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg := app.Defaults()
	cfg.Table = "cms-events-" + ids.New("t")
	cfg.EventBus = "cms-events-" + ids.New("bus")
	st := tablestore.NewFromConfig(awsCfg, cfg.Table, stack.DynamoDBOptions())
	if err := tablestore.CreateTable(ctx, st.DB(), cfg.Table); err != nil {
		return nil, err
	}
	if _, err := eventbridge.NewFromConfig(awsCfg).CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(cfg.EventBus)}); err != nil {
		return nil, err
	}
	// The billing queue (POST /billing/runs queues its fan-out; the worker's samples drain it)
	// and the exports bucket: billing_test.go.
	billingQ, err := billingResources(ctx, awsCfg, &cfg)
	if err != nil {
		return nil, err
	}
	deps, err := app.New(ctx, cfg, awsCfg, quiet(), stack.DynamoDBOptions())
	if err != nil {
		return nil, err
	}
	f := &fixture{cfg: cfg, awsCfg: awsCfg, deps: deps, billingQ: billingQ, handlers: map[string]*httpapi.API{}}

	// The first admin, as the bootstrap sample creates it.
	var boot app.BootstrapEvent
	if err := readJSON(filepath.Join("bootstrap", "admin.json"), nil, &boot); err != nil {
		return nil, err
	}
	if _, err := deps.BootstrapHandler(ctx, boot); err != nil {
		return nil, err
	}
	admin, err := deps.Store.GetUserByEmail(ctx, boot.Email)
	if err != nil {
		return nil, err
	}
	ap := admin.Principal()
	dst, err := deps.Hierarchy.Create(ctx, ap, access.Distributor, hierarchy.CreateInput{Name: "Sample Distribution"})
	if err != nil {
		return nil, err
	}
	var prts []*hierarchy.Entity
	for _, name := range []string{"Sample Reseller", "Other Reseller"} {
		p, err := deps.Hierarchy.Create(ctx, ap, access.Partner, hierarchy.CreateInput{Name: name,
			Parent: &hierarchy.ParentInput{Type: access.Distributor, ID: dst.ID}, Tier: "standard"})
		if err != nil {
			return nil, err
		}
		prts = append(prts, p)
	}
	pu, err := deps.Users.Create(ctx, ap, identity.CreateUserInput{Email: "ops@reseller.example", FirstName: "Olga",
		LastName: "Ops", Role: access.PartnerAdmin, ScopeID: prts[0].ID, Password: partnerPassword})
	if err != nil {
		return nil, err
	}
	f.partner = pu.Principal()
	f.ids = strings.NewReplacer(sampleAdmin, admin.ID, samplePartnerUser, pu.ID, sampleDistributor, dst.ID,
		samplePartner, prts[0].ID, sampleOtherPrt, prts[1].ID)
	return f, nil
}

// readJSON decodes a sample, with the fixture's ids when ids is not nil.
func readJSON(path string, ids *strings.Replacer, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if ids != nil {
		b = []byte(ids.Replace(string(b)))
	}
	return json.Unmarshal(b, v)
}

// samples lists events/<fn>/*.json by function.
func samples(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range files {
		fn := filepath.Dir(f)
		out[fn] = append(out[fn], f)
	}
	if len(out) == 0 {
		t.Fatal("no samples")
	}
	return out
}

func isHTTP(fn string) bool {
	return slices.ContainsFunc(app.AllRoutes(), func(r httpapi.Route) bool { return r.Function == fn })
}

func TestEverySampleIsAnsweredByItsHandler(t *testing.T) {
	all := samples(t)
	fns := make([]string, 0, len(all))
	for fn := range all {
		fns = append(fns, fn)
	}
	sort.Strings(fns)
	for _, fn := range fns {
		for _, path := range all[fn] {
			t.Run(path, func(t *testing.T) {
				f := setup(t)
				switch {
				case isHTTP(fn):
					f.feedHTTP(t, fn, path)
				case fn == routesAuthorizer:
					f.feedAuthorizer(t, path)
				case fn == "bootstrap":
					var ev app.BootstrapEvent
					if err := readJSON(path, nil, &ev); err != nil {
						t.Fatal(err)
					}
					res, err := f.deps.BootstrapHandler(context.Background(), ev)
					if err != nil || res.Created { // the fixture ran it first: a second run creates nothing
						t.Errorf("bootstrap again: %+v, %v", res, err)
					}
				case fn == "publisher":
					var ev events.DynamoDBEvent
					if err := readJSON(path, f.ids, &ev); err != nil {
						t.Fatal(err)
					}
					res, err := app.NewPublisher(f.cfg, f.awsCfg, quiet()).Handle(context.Background(), ev)
					if err != nil || len(res.BatchItemFailures) != 0 {
						t.Errorf("publisher: %+v, %v", res, err)
					}
				case fn == "usagequeue" || fn == "usagestream" || fn == "usagefiles":
					f.feedUsage(t, fn, path) // usage_test.go
				case fn == "billingworker":
					f.feedBillingWorker(t, path) // billing_test.go
				case fn == "usagekeys":
					f.feedUsageKeys(t, path) // usagekeys_test.go
				default:
					t.Errorf("no handler known for the samples of %s: add it to this test", fn)
				}
			})
		}
	}
}

const routesAuthorizer = "authorizer"

// feedHTTP runs a proxy event through the function's handler as its main does
// (httpadapter.New(handler).ProxyWithContext) and expects a 2xx answer in the envelope.
func (f *fixture) feedHTTP(t *testing.T, fn, path string) {
	t.Helper()
	var ev events.APIGatewayProxyRequest
	if err := readJSON(path, f.ids, &ev); err != nil {
		t.Fatal(err)
	}
	h, ok := f.handlers[fn]
	if !ok {
		var err error
		if h, err = f.deps.Handler(fn); err != nil {
			t.Fatal(err)
		}
		f.handlers[fn] = h
	}
	res, err := httpadapter.New(h).ProxyWithContext(context.Background(), ev)
	if err != nil {
		t.Fatalf("handler error: %v", err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		t.Fatalf("%s %s answered %d: %s", ev.HTTPMethod, ev.Path, res.StatusCode, res.Body)
	}
	ct := res.Headers["Content-Type"]
	if ct == "" && len(res.MultiValueHeaders["Content-Type"]) > 0 {
		ct = res.MultiValueHeaders["Content-Type"][0]
	}
	if !strings.HasPrefix(ct, "application/json") || strings.HasPrefix(ev.Resource, "/swagger") || ev.Resource == "/.well-known/jwks.json" {
		return // raw answers: documents, assets, keys
	}
	var env struct {
		Code   int               `json:"code"`
		Errors []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal([]byte(res.Body), &env); err != nil || env.Code != res.StatusCode || len(env.Errors) != 0 {
		t.Errorf("not the envelope (%v): %s", err, res.Body)
	}
}

// feedAuthorizer expects the placeholder token refused, and a real one accepted with the context
// the HTTP samples carry.
func (f *fixture) feedAuthorizer(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
	if err := readJSON(path, f.ids, &ev); err != nil {
		t.Fatal(err)
	}
	authz := f.deps.Authorizer()
	if _, err := authz.Handle(ctx, ev); !errors.Is(err, authorizer.ErrUnauthorized) {
		t.Errorf("the placeholder token: %v, want Unauthorized", err)
	}
	ses, err := f.deps.Sessions.Login(ctx, identity.LoginInput{Email: f.partner.Email, Password: partnerPassword})
	if err != nil {
		t.Fatal(err)
	}
	ev.Headers["Authorization"] = "Bearer " + ses.Token
	ev.MultiValueHeaders["Authorization"] = []string{"Bearer " + ses.Token}
	res, err := authz.Handle(ctx, ev)
	if err != nil {
		t.Fatalf("a real token: %v", err)
	}
	if len(res.PolicyDocument.Statement) != 1 || res.PolicyDocument.Statement[0].Effect != "Allow" {
		t.Errorf("policy %+v", res.PolicyDocument)
	}
	// A partner admin is metered on its partner's API key (usagekeys/, shared/usagekeys).
	if want := f.deps.UsageKeys.Value(f.partner.ScopeID); res.UsageIdentifierKey != want {
		t.Errorf("usageIdentifierKey %q, want the partner's key %q", res.UsageIdentifierKey, want)
	}
	// The context is what the HTTP samples carry in requestContext.authorizer.
	var sample events.APIGatewayProxyRequest
	if err := readJSON(filepath.Join("tenants", "list.json"), f.ids, &sample); err != nil {
		t.Fatal(err)
	}
	for k, v := range res.Context {
		if got := sample.RequestContext.Authorizer[k]; got != v {
			t.Errorf("context %s: the authorizer says %#v, tenants/list.json %#v", k, v, got)
		}
	}
	for k := range sample.RequestContext.Authorizer {
		if _, ok := res.Context[k]; !ok && k != "principalId" && k != "integrationLatency" {
			t.Errorf("tenants/list.json carries authorizer.%s, which the authorizer does not set", k)
		}
	}
	if sample.RequestContext.Authorizer["principalId"] != res.PrincipalID {
		t.Errorf("principalId %q, sample %v", res.PrincipalID, sample.RequestContext.Authorizer["principalId"])
	}
}
