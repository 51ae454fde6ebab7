package events_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigateway"

	"github.com/channelbilling/cms/local/emulator"
	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/keyprovisioner"
	"github.com/channelbilling/cms/shared/usagekeys"
)

// keysFixture is the API Gateway side of the usagekeys samples: three usage plans in moto and a
// key prefix of the fixture's own, as the stack gives the function (CMS_USAGE_PLAN_*,
// CMS_USAGE_KEY_PREFIX).
type keysFixture struct {
	gw    *apigateway.Client
	cfg   keyprovisioner.Config
	names map[string]string // plan id -> plan
	prov  *keyprovisioner.Provisioner
}

var (
	keysOnce sync.Once
	keysFix  *keysFixture
	keysErr  error
)

func (f *fixture) usageKeys(t *testing.T) *keysFixture {
	t.Helper()
	stack := emulator.ForTest(t)
	keysOnce.Do(func() {
		ctx := context.Background()
		k := &keysFixture{gw: apigateway.NewFromConfig(f.awsCfg), names: map[string]string{},
			cfg: keyprovisioner.Config{KeyPrefix: "cms-events-" + ids.New("k") + "-usage-", Plans: map[string]string{}}}
		for _, plan := range usagekeys.Plans {
			out, err := k.gw.CreateUsagePlan(ctx, &apigateway.CreateUsagePlanInput{Name: aws.String(k.cfg.KeyPrefix + plan)})
			if err != nil {
				keysErr = err
				return
			}
			k.cfg.Plans[plan] = aws.ToString(out.Id)
			k.names[aws.ToString(out.Id)] = plan
		}
		// As functions/usagekeys/main.go builds it (app.KeyProvisionerFromLambdaEnv).
		k.prov, keysErr = app.NewKeyProvisioner(ctx, f.cfg, k.cfg, f.awsCfg, quiet(), stack.DynamoDBOptions())
		keysFix = k
	})
	if keysErr != nil {
		t.Fatalf("usage keys fixture: %v", keysErr)
	}
	return keysFix
}

// plansOf returns the plans (by name) holding the key named after owner; ok false without key.
func (k *keysFixture) plansOf(t *testing.T, owner string) (value string, plans []string, ok bool) {
	t.Helper()
	ctx := context.Background()
	out, err := k.gw.GetApiKeys(ctx, &apigateway.GetApiKeysInput{NameQuery: aws.String(k.cfg.KeyPrefix + owner), IncludeValues: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range out.Items {
		if aws.ToString(key.Name) != k.cfg.KeyPrefix+owner {
			continue
		}
		for id, plan := range k.names {
			if _, err := k.gw.GetUsagePlanKey(ctx, &apigateway.GetUsagePlanKeyInput{UsagePlanId: aws.String(id), KeyId: key.Id}); err == nil {
				plans = append(plans, plan)
			}
		}
		return aws.ToString(key.Value), plans, true
	}
	return "", nil, false
}

// feedUsageKeys feeds a usagekeys sample to the provisioner through its Lambda entry point
// (Handle). The stream sample creates the sample partner, moves it to premium and deletes the
// other partner: the first ends with its derived key in the premium plan, the second with none.
// The sync sample converges the fixture's channel: the platform, the distributor and the
// partners each end with their key, in their plan, with the value the authorizer names.
func (f *fixture) feedUsageKeys(t *testing.T, path string) {
	t.Helper()
	k := f.usageKeys(t)
	ctx := context.Background()
	var raw json.RawMessage
	if err := readJSON(path, f.ids, &raw); err != nil {
		t.Fatal(err)
	}
	out, err := k.prov.Handle(ctx, raw)
	if err != nil {
		t.Fatalf("usagekeys: %v", err)
	}
	partner := f.ids.Replace(samplePartner)
	if strings.Contains(string(raw), `"Records"`) {
		res, ok := out.(events.DynamoDBEventResponse)
		if !ok || len(res.BatchItemFailures) != 0 {
			t.Fatalf("usagekeys: %#v", out)
		}
		if v, plans, ok := k.plansOf(t, partner); !ok || v != f.deps.UsageKeys.Value(partner) || len(plans) != 1 || plans[0] != "premium" {
			t.Errorf("the sample partner's key: %v, value ok %v, plans %v; want one key in premium", ok, v == f.deps.UsageKeys.Value(partner), plans)
		}
		if _, _, ok := k.plansOf(t, f.ids.Replace(sampleOtherPrt)); ok {
			t.Errorf("the deleted partner keeps its key")
		}
		return
	}
	res, ok := out.(keyprovisioner.SyncResult)
	if !ok || res.Owners < 4 {
		t.Fatalf("sync: %#v, want the platform, the distributor and two partners at least", out)
	}
	for owner, plan := range map[string]string{access.PlatformID: "enterprise", f.ids.Replace(sampleDistributor): "enterprise",
		partner: "standard", f.ids.Replace(sampleOtherPrt): "standard"} {
		v, plans, ok := k.plansOf(t, owner)
		if !ok || v != f.deps.UsageKeys.Value(owner) || len(plans) != 1 || plans[0] != plan {
			t.Errorf("%s after the sync: key %v, value ok %v, plans %v; want one key in %s", owner, ok, v == f.deps.UsageKeys.Value(owner), plans, plan)
		}
	}
}
