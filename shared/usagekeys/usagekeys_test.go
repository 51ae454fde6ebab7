package usagekeys_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/usagekeys"
)

func mustDeriver(tb testing.TB, secret []byte) *usagekeys.Deriver {
	tb.Helper()
	d, err := usagekeys.NewDeriver(secret)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func TestValue(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	d := mustDeriver(t, secret)
	v := d.Value("prt_1")
	// Independent computation of the documented derivation.
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("cms usage key\x00prt_1"))
	if want := "cmsk" + hex.EncodeToString(m.Sum(nil)); v != want {
		t.Errorf("Value = %q, want %q", v, want)
	}
	if !regexp.MustCompile(`^cmsk[0-9a-f]{64}$`).MatchString(v) || len(v) < 20 || len(v) > 128 {
		t.Errorf("Value %q is not an API Gateway key value (20 to 128 characters)", v)
	}
	if d.Value("prt_1") != v {
		t.Error("Value is not deterministic")
	}
	if d.Value("prt_2") == v {
		t.Error("two owners share a key")
	}
	if mustDeriver(t, bytes.Repeat([]byte{8}, 32)).Value("prt_1") == v {
		t.Error("the value does not depend on the secret")
	}
	secret[0] = 9 // the deriver keeps its own copy
	if d.Value("prt_1") != v {
		t.Error("the deriver shares the caller's secret buffer")
	}
}

func TestNewDeriver(t *testing.T) {
	if _, err := usagekeys.NewDeriver(make([]byte, 31)); err == nil {
		t.Error("ErrShortSecret: a 31-byte secret was accepted")
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    usagekeys.Entity
		want string
	}{
		{"partner standard", usagekeys.Entity{Type: access.Partner, Tier: hierarchy.TierStandard}, "standard"},
		{"partner premium", usagekeys.Entity{Type: access.Partner, Tier: hierarchy.TierPremium}, "premium"},
		{"partner enterprise", usagekeys.Entity{Type: access.Partner, Tier: hierarchy.TierEnterprise}, "enterprise"},
		{"partner without tier", usagekeys.Entity{Type: access.Partner}, "standard"},
		{"partner unknown tier", usagekeys.Entity{Type: access.Partner, Tier: "gold"}, "standard"},
		{"distributor", usagekeys.Entity{Type: access.Distributor}, "enterprise"},
		{"platform", usagekeys.Entity{Type: access.Platform}, "enterprise"},
		{"tenant", usagekeys.Entity{Type: access.Tenant}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := usagekeys.Plan(tc.e); got != tc.want {
				t.Errorf("Plan = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOwner(t *testing.T) {
	types := map[string]access.EntityType{
		"platform": access.Platform, "dst": access.Distributor, "prt": access.Partner, "ten": access.Tenant,
		"prt2": access.Partner, "ten2": access.Tenant,
	}
	for _, tc := range []struct {
		name, path, want string
		ok               bool
	}{
		{"tenant under a distributor's partner", "/platform/dst/prt/ten/", "prt", true},
		{"tenant under a direct partner", "/platform/prt2/ten2/", "prt2", true},
		{"partner", "/platform/dst/prt/", "prt", true},
		{"distributor", "/platform/dst/", "dst", true},
		{"platform", "/platform/", "platform", true},
		{"unknown entities", "/x/y/", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := usagekeys.Owner(access.IDsOnPath(tc.path), types)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Owner(%s) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}
