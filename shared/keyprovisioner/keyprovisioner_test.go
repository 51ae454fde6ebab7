package keyprovisioner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"
	"github.com/aws/aws-sdk-go-v2/service/apigateway/types"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/keyprovisioner"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usagekeys"
)

func TestMain(m *testing.M) { os.Exit(emulator.Main(m, nil)) }

// entities is the channel of a sync: a hand-written hierarchy listing.
type entities map[string]*hierarchy.Entity

func (es entities) GetEntity(_ context.Context, id string) (*hierarchy.Entity, error) {
	if e, ok := es[id]; ok {
		return e, nil
	}
	return nil, apperr.NotFoundf("No entity with this id.")
}

func (es entities) ListSubtree(_ context.Context, t access.EntityType, prefix string) ([]*hierarchy.Entity, error) {
	var out []*hierarchy.Entity
	for _, e := range es {
		if e.Type == t && strings.HasPrefix(e.Path, prefix) {
			out = append(out, e)
		}
	}
	return out, nil
}

// failing makes CreateApiKey fail for the names that contain one of its strings.
type failing struct {
	keyprovisioner.Gateway
	names []string
}

func (f failing) CreateApiKey(ctx context.Context, in *apigateway.CreateApiKeyInput, o ...func(*apigateway.Options)) (*apigateway.CreateApiKeyOutput, error) {
	for _, n := range f.names {
		if strings.Contains(aws.ToString(in.Name), n) {
			return nil, errors.New("injected failure")
		}
	}
	return f.Gateway.CreateApiKey(ctx, in, o...)
}

// env is one test's API Gateway (moto) with three usage plans and a key prefix of its own.
type env struct {
	gw    *apigateway.Client
	keys  *usagekeys.Deriver
	cfg   keyprovisioner.Config
	plans map[string]string // plan id -> plan name
}

func newEnv(t *testing.T) *env {
	t.Helper()
	stack := emulator.ForTest(t)
	ctx := context.Background()
	awsCfg, err := stack.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{gw: apigateway.NewFromConfig(awsCfg), plans: map[string]string{},
		cfg: keyprovisioner.Config{KeyPrefix: "test-" + ids.New("stk") + "-usage-", Plans: map[string]string{}}}
	for _, plan := range usagekeys.Plans {
		out, err := e.gw.CreateUsagePlan(ctx, &apigateway.CreateUsagePlanInput{Name: aws.String(e.cfg.KeyPrefix + plan)})
		if err != nil {
			t.Fatal(err)
		}
		e.cfg.Plans[plan] = aws.ToString(out.Id)
		e.plans[aws.ToString(out.Id)] = plan
	}
	if e.keys, err = usagekeys.NewDeriver(bytes.Repeat([]byte{3}, 32)); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) provisioner(t *testing.T, gw keyprovisioner.Gateway, ents entities) *keyprovisioner.Provisioner {
	t.Helper()
	if gw == nil {
		gw = e.gw
	}
	p, err := keyprovisioner.New(gw, e.keys, ents, e.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// key is an API key of this test's prefix as API Gateway holds it, with its plans (by name).
type key struct {
	id, value string
	enabled   bool
	plans     []string
}

// state reads every key of the test's prefix, by owner id.
func (e *env) state(t *testing.T) map[string][]key {
	t.Helper()
	ctx := context.Background()
	out := map[string][]key{}
	ks, err := e.gw.GetApiKeys(ctx, &apigateway.GetApiKeysInput{IncludeValues: aws.Bool(true), Limit: aws.Int32(500)})
	if err != nil {
		t.Fatal(err)
	}
	members := map[string][]string{}
	for id, plan := range e.plans {
		pk, err := e.gw.GetUsagePlanKeys(ctx, &apigateway.GetUsagePlanKeysInput{UsagePlanId: aws.String(id), Limit: aws.Int32(500)})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range pk.Items {
			members[aws.ToString(k.Id)] = append(members[aws.ToString(k.Id)], plan)
		}
	}
	for _, k := range ks.Items {
		owner, ok := strings.CutPrefix(aws.ToString(k.Name), e.cfg.KeyPrefix)
		if !ok {
			continue
		}
		ps := members[aws.ToString(k.Id)]
		slices.Sort(ps)
		out[owner] = append(out[owner], key{id: aws.ToString(k.Id), value: aws.ToString(k.Value), enabled: k.Enabled, plans: ps})
	}
	return out
}

// wantKey checks that owner has exactly one key, with its derived value, enabled, in plan only.
func (e *env) wantKey(t *testing.T, st map[string][]key, owner, plan string) key {
	t.Helper()
	ks := st[owner]
	if len(ks) != 1 {
		t.Fatalf("%s has %d keys, want 1: %+v", owner, len(ks), ks)
	}
	k := ks[0]
	if k.value != e.keys.Value(owner) || !k.enabled || !slices.Equal(k.plans, []string{plan}) {
		t.Errorf("%s's key: value %q (want %q), enabled %v, plans %v (want [%s])", owner, k.value, e.keys.Value(owner), k.enabled, k.plans, plan)
	}
	return k
}

var seq int

func record(name events.DynamoDBOperationType, old, cur *hierarchy.Entity) events.DynamoDBEventRecord {
	seq++
	r := events.DynamoDBEventRecord{EventName: string(name), EventSource: "aws:dynamodb",
		Change: events.DynamoDBStreamRecord{SequenceNumber: fmt.Sprintf("%024d", seq), StreamViewType: "NEW_AND_OLD_IMAGES"}}
	if old != nil {
		r.Change.OldImage = tablestore.EntityImage(old)
	}
	if cur != nil {
		r.Change.NewImage = tablestore.EntityImage(cur)
	}
	return r
}

func partner(id, tier string) *hierarchy.Entity {
	return &hierarchy.Entity{ID: id, Type: access.Partner, Tier: tier, Name: id, Status: hierarchy.StatusActive, Path: "/platform/dst/" + id + "/",
		Parent: &hierarchy.Ref{Type: access.Distributor, ID: "dst"}}
}

func handle(t *testing.T, p *keyprovisioner.Provisioner, recs ...events.DynamoDBEventRecord) events.DynamoDBEventResponse {
	t.Helper()
	b, err := json.Marshal(events.DynamoDBEvent{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Handle(context.Background(), b) // through the Lambda entry point
	if err != nil {
		t.Fatal(err)
	}
	res, ok := out.(events.DynamoDBEventResponse)
	if !ok {
		t.Fatalf("a stream batch answered %T", out)
	}
	return res
}

func TestPartnerLifecycle(t *testing.T) {
	e := newEnv(t)
	p := e.provisioner(t, nil, entities{})
	prt := ids.New("prt")

	// Created: its key, in the standard plan.
	created := partner(prt, hierarchy.TierStandard)
	if res := handle(t, p, record(events.DynamoDBOperationTypeInsert, nil, created)); len(res.BatchItemFailures) != 0 {
		t.Fatalf("insert: %+v", res)
	}
	first := e.wantKey(t, e.state(t), prt, "standard")

	// The same record again (a retried batch): nothing changes.
	handle(t, p, record(events.DynamoDBOperationTypeInsert, nil, created))
	if again := e.wantKey(t, e.state(t), prt, "standard"); again.id != first.id {
		t.Errorf("a retried insert replaced the key: %s, then %s", first.id, again.id)
	}

	// A change that keeps the tier (a new tenant's counter): nothing to do.
	renamed := partner(prt, hierarchy.TierStandard)
	renamed.Name = "Renamed"
	if n, err := p.Ensure(context.Background(), usagekeys.Entity{ID: prt, Type: access.Partner, Tier: hierarchy.TierStandard}); err != nil || n != 0 {
		t.Errorf("Ensure of a converged partner: %d changes, %v; want 0", n, err)
	}
	handle(t, p, record(events.DynamoDBOperationTypeModify, created, renamed))
	e.wantKey(t, e.state(t), prt, "standard")

	// Tier changed: the same key moves to the premium plan, then to enterprise.
	premium := partner(prt, hierarchy.TierPremium)
	handle(t, p, record(events.DynamoDBOperationTypeModify, renamed, premium))
	if k := e.wantKey(t, e.state(t), prt, "premium"); k.id != first.id {
		t.Errorf("a tier change replaced the key instead of moving it")
	}
	enterprise := partner(prt, hierarchy.TierEnterprise)
	handle(t, p, record(events.DynamoDBOperationTypeModify, premium, enterprise))
	e.wantKey(t, e.state(t), prt, "enterprise")

	// Deleted: no key, in no plan.
	handle(t, p, record(events.DynamoDBOperationTypeRemove, enterprise, nil))
	if ks := e.state(t)[prt]; len(ks) != 0 {
		t.Errorf("a deleted partner keeps keys %+v", ks)
	}
	for id := range e.plans {
		pk, err := e.gw.GetUsagePlanKeys(context.Background(), &apigateway.GetUsagePlanKeysInput{UsagePlanId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		if len(pk.Items) != 0 {
			t.Errorf("usage plan %s still holds %d keys", e.plans[id], len(pk.Items))
		}
	}
	// Removing again (a retried batch) is fine.
	if res := handle(t, p, record(events.DynamoDBOperationTypeRemove, enterprise, nil)); len(res.BatchItemFailures) != 0 {
		t.Errorf("a repeated remove: %+v", res)
	}
}

func TestStreamIgnoresWhatOwnsNoKey(t *testing.T) {
	e := newEnv(t)
	p := e.provisioner(t, nil, entities{})
	dst := &hierarchy.Entity{ID: ids.New("dst"), Type: access.Distributor, Path: "/platform/x/", Status: hierarchy.StatusActive}
	ten := &hierarchy.Entity{ID: ids.New("ten"), Type: access.Tenant, Path: "/platform/x/y/z/", Status: hierarchy.StatusActive}
	other := events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{SequenceNumber: "1",
		NewImage: tablestore.OutboxImage(tablestoreEvent())}}
	handle(t, p, record(events.DynamoDBOperationTypeInsert, nil, ten), other, record(events.DynamoDBOperationTypeInsert, nil, dst))
	st := e.state(t)
	if len(st) != 1 {
		t.Errorf("keys for %v, want the distributor's only", st)
	}
	e.wantKey(t, st, dst.ID, "enterprise")
}

func TestStreamReportsTheFirstFailure(t *testing.T) {
	e := newEnv(t)
	a, b, c := ids.New("prt"), ids.New("prt"), ids.New("prt")
	p := e.provisioner(t, failing{Gateway: e.gw, names: []string{b}}, entities{})
	rb := record(events.DynamoDBOperationTypeInsert, nil, partner(b, ""))
	res := handle(t, p, record(events.DynamoDBOperationTypeInsert, nil, partner(a, "")), rb,
		record(events.DynamoDBOperationTypeInsert, nil, partner(c, "")))
	if len(res.BatchItemFailures) != 1 || res.BatchItemFailures[0].ItemIdentifier != rb.Change.SequenceNumber {
		t.Fatalf("failures %+v, want the second record's sequence number %s", res.BatchItemFailures, rb.Change.SequenceNumber)
	}
	st := e.state(t)
	e.wantKey(t, st, a, "standard") // before the failure: applied
	if len(st[b]) != 0 || len(st[c]) != 0 {
		t.Errorf("the failed record and the one after it were applied: %v", st)
	}
	// The retry (from the failed record) converges.
	handle(t, e.provisioner(t, nil, entities{}), rb, record(events.DynamoDBOperationTypeInsert, nil, partner(c, "")))
	st = e.state(t)
	e.wantKey(t, st, b, "standard")
	e.wantKey(t, st, c, "standard")
}

func TestSync(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	plat := &hierarchy.Entity{ID: access.PlatformID, Type: access.Platform, Path: access.PlatformPath}
	dst := &hierarchy.Entity{ID: ids.New("dst"), Type: access.Distributor, Path: "/platform/d/"}
	kept, moved, disabled, fresh := partner(ids.New("prt"), "premium"), partner(ids.New("prt"), "enterprise"), partner(ids.New("prt"), ""), partner(ids.New("prt"), "standard")
	ents := entities{plat.ID: plat, dst.ID: dst, kept.ID: kept, moved.ID: moved, disabled.ID: disabled, fresh.ID: fresh}
	p := e.provisioner(t, nil, ents)

	// What the stream left: kept converged, moved still in its old plan, disabled disabled,
	// fresh without a key; plus a key of a deleted partner, a stale key (older secret) of kept,
	// and a key under the prefix that this deployment did not derive.
	for _, x := range []*hierarchy.Entity{kept, moved, disabled} {
		if _, err := p.Ensure(ctx, usagekeys.Entity{ID: x.ID, Type: x.Type, Tier: x.Tier}); err != nil {
			t.Fatal(err)
		}
	}
	st := e.state(t)
	mk := st[moved.ID][0]
	if _, err := e.gw.DeleteUsagePlanKey(ctx, &apigateway.DeleteUsagePlanKeyInput{UsagePlanId: aws.String(e.cfg.Plans["enterprise"]), KeyId: aws.String(mk.id)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gw.CreateUsagePlanKey(ctx, &apigateway.CreateUsagePlanKeyInput{UsagePlanId: aws.String(e.cfg.Plans["standard"]), KeyId: aws.String(mk.id), KeyType: aws.String("API_KEY")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gw.UpdateApiKey(ctx, &apigateway.UpdateApiKeyInput{ApiKey: aws.String(st[disabled.ID][0].id),
		PatchOperations: []types.PatchOperation{{Op: types.OpReplace, Path: aws.String("/enabled"), Value: aws.String("false")}}}); err != nil {
		t.Fatal(err)
	}
	gone := ids.New("prt")
	mustCreate := func(owner, value, plan string) {
		t.Helper()
		out, err := e.gw.CreateApiKey(ctx, &apigateway.CreateApiKeyInput{Name: aws.String(e.cfg.KeyPrefix + owner), Value: aws.String(value), Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		if plan != "" {
			if _, err := e.gw.CreateUsagePlanKey(ctx, &apigateway.CreateUsagePlanKeyInput{UsagePlanId: aws.String(e.cfg.Plans[plan]), KeyId: out.Id, KeyType: aws.String("API_KEY")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustCreate(gone, e.keys.Value(gone), "standard")
	foreign := ids.New("prt")
	mustCreate(foreign, "not-derived-by-this-deployment-0001", "")
	stale, _ := usagekeys.NewDeriver(bytes.Repeat([]byte{4}, 32))
	mustCreate(kept.ID, stale.Value(kept.ID), "")

	out, err := p.Handle(ctx, json.RawMessage(`{"action":"sync"}`))
	if err != nil {
		t.Fatal(err)
	}
	res := out.(keyprovisioner.SyncResult)
	// moved: out of standard, into enterprise; disabled: enabled; fresh: created and added;
	// platform and distributor: created and added; kept: its stale key deleted.
	if res.Owners != 6 || res.Removed != 1 || res.Changes != 2+1+2+2+2+1 {
		t.Errorf("sync result %+v, want 6 owners, 10 changes, 1 removed", res)
	}
	st = e.state(t)
	e.wantKey(t, st, plat.ID, "enterprise")
	e.wantKey(t, st, dst.ID, "enterprise")
	e.wantKey(t, st, kept.ID, "premium")
	if k := e.wantKey(t, st, moved.ID, "enterprise"); k.id != mk.id {
		t.Errorf("the moved partner's key was replaced")
	}
	e.wantKey(t, st, disabled.ID, "standard")
	e.wantKey(t, st, fresh.ID, "standard")
	if len(st[gone]) != 0 {
		t.Errorf("the deleted partner's key survived the sync")
	}
	if len(st[foreign]) != 1 {
		t.Errorf("the sync deleted a key it did not derive")
	}

	// A second sync finds everything in place.
	again, err := p.Sync(ctx)
	if err != nil || again.Changes != 0 || again.Removed != 0 {
		t.Errorf("a second sync: %+v, %v; want no change", again, err)
	}
}

func TestHandleRefusesOtherEvents(t *testing.T) {
	e := newEnv(t)
	p := e.provisioner(t, nil, entities{})
	for _, ev := range []string{`{"action":"purge"}`, `[]`, `{}`} {
		if _, err := p.Handle(context.Background(), json.RawMessage(ev)); err == nil {
			t.Errorf("%s: no error", ev)
		}
	}
}

func TestConfig(t *testing.T) {
	t.Setenv(keyprovisioner.EnvKeyPrefix, "")
	for _, plan := range usagekeys.Plans {
		t.Setenv(keyprovisioner.EnvPlanPrefix+strings.ToUpper(plan), "")
	}
	_, err := keyprovisioner.ConfigFromEnv()
	for _, name := range []string{"CMS_USAGE_KEY_PREFIX", "CMS_USAGE_PLAN_STANDARD", "CMS_USAGE_PLAN_PREMIUM", "CMS_USAGE_PLAN_ENTERPRISE"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("ErrMissing: error %v does not name %s", err, name)
		}
	}
	t.Setenv(keyprovisioner.EnvKeyPrefix, "Cms-usage-")
	for _, plan := range usagekeys.Plans {
		t.Setenv(keyprovisioner.EnvPlanPrefix+strings.ToUpper(plan), "plan-"+plan)
	}
	c, err := keyprovisioner.ConfigFromEnv()
	if err != nil || c.KeyPrefix != "Cms-usage-" || c.Plans["premium"] != "plan-premium" {
		t.Errorf("OK: %+v, %v", c, err)
	}
	c.Plans["premium"] = c.Plans["standard"]
	if c.Validate() == nil {
		t.Error("ErrSharedPlan: two tiers on one plan accepted")
	}
}

// tablestoreEvent is an outbox event: its item is on the stream too, and owns no key.
func tablestoreEvent() outbox.Event {
	return outbox.Event{ID: ids.New("evt"), Type: "user.invited", Time: time.Now(), Path: access.PlatformPath, Detail: json.RawMessage(`{}`)}
}
