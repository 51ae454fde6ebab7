package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
)

// MustDecimal parses s or fails the test.
func MustDecimal(tb testing.TB, s string) money.Decimal {
	tb.Helper()
	d, err := money.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// MustPeriod parses s or fails the test.
func MustPeriod(tb testing.TB, s string) period.Period {
	tb.Helper()
	p, err := period.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// decode builds an input from its JSON the way the HTTP layer does.
func decode(tb testing.TB, body string, v any) {
	tb.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		tb.Fatal(err)
	}
}

// fieldsOf lists "field:code" of every field error in err.
func fieldsOf(err error) map[string]bool {
	out := map[string]bool{}
	for _, f := range apperr.As(err).Fields {
		out[f.Field+":"+f.Code] = true
	}
	return out
}

func TestSKUInputValidate(t *testing.T) {
	const storage = `"tiers":[{"upTo":100,"unitPrice":"0.10"},{"upTo":1000,"unitPrice":0.08},{"upTo":null,"unitPrice":"0.05"}]`
	for _, tc := range []struct {
		name string
		body string
		want []string // field:code; empty for OK
	}{
		{"OK/PerUnit", `{"code":"api-calls","name":"API calls","model":"per_unit","unitPrice":"0.001"}`, nil},
		{"OK/Graduated", `{"code":"storage-gb","name":"Storage","model":"graduated",` + storage + `,"includedQuantity":50,"thresholds":[100,"1000.5"]}`, nil},
		{"OK/Package", `{"code":"sms","name":"SMS","model":"package","packageSize":100,"packagePrice":"15"}`, nil},
		{"ErrTiersNotContiguous", `{"code":"x","name":"X","model":"graduated","tiers":[{"upTo":100,"unitPrice":1},{"upTo":50,"unitPrice":1},{"unitPrice":1}]}`,
			[]string{"tiers[1].upTo:invalid"}},
		{"ErrLastTierClosed", `{"code":"x","name":"X","model":"volume","tiers":[{"upTo":100,"unitPrice":1},{"upTo":1000,"unitPrice":1}]}`,
			[]string{"tiers[1].upTo:invalid"}},
		{"ErrMiddleTierOpen", `{"code":"x","name":"X","model":"graduated","tiers":[{"unitPrice":1},{"unitPrice":1}]}`,
			[]string{"tiers[0].upTo:required"}},
		{"ErrNegativePrice", `{"code":"x","name":"X","model":"per_unit","unitPrice":"-0.01"}`, []string{"unitPrice:invalid"}},
		{"ErrNegativeTierFee", `{"code":"x","name":"X","model":"graduated","tiers":[{"unitPrice":1,"flatFee":-5}]}`, []string{"tiers[0].flatFee:invalid"}},
		{"ErrBadCurrency", `{"code":"x","name":"X","currency":"EURO","model":"per_unit","unitPrice":1}`, []string{"currency:invalid"}},
		{"ErrLowerCaseCurrency", `{"code":"x","name":"X","currency":"eur","model":"per_unit","unitPrice":1}`, []string{"currency:invalid"}},
		{"ErrNotADecimal", `{"code":"x","name":"X","model":"per_unit","unitPrice":"ten"}`, []string{"unitPrice:invalid"}},
		{"ErrTierPriceMissing", `{"code":"x","name":"X","model":"graduated","tiers":[{"upTo":null}]}`, []string{"tiers[0].unitPrice:required"}},
		{"ErrFieldNotUsed", `{"code":"x","name":"X","model":"per_unit","unitPrice":1,"packageSize":5}`, []string{"packageSize:not_allowed"}},
		{"ErrThresholds", `{"code":"x","name":"X","model":"per_unit","unitPrice":1,"thresholds":[10,5,0]}`,
			[]string{"thresholds[1]:not_ascending", "thresholds[2]:invalid"}},
		{"ErrEffectiveFrom", `{"code":"x","name":"X","model":"per_unit","unitPrice":1,"effectiveFrom":"2026-13-01"}`, []string{"effectiveFrom:invalid"}},
		{"ErrEveryFieldAtOnce", `{"code":"bad code!","unitPrice":1}`, []string{"code:invalid", "name:required", "model:required"}},
		{"ErrCodeMissing", `{"name":"X","model":"per_unit","unitPrice":1}`, []string{"code:required"}},
		{"ErrNameTooLong", `{"code":"x","name":"` + strings.Repeat("n", 201) + `","model":"per_unit","unitPrice":1}`, []string{"name:too_long"}},
		{"ErrNameControl", `{"code":"x","name":"X\tY","model":"per_unit","unitPrice":1}`, []string{"name:invalid"}},
		{"ErrUnitTooLong", `{"code":"x","name":"X","unit":"` + strings.Repeat("u", 51) + `","model":"per_unit","unitPrice":1}`, []string{"unit:too_long"}},
		{"ErrModelUnknown", `{"code":"x","name":"X","model":"tiered","unitPrice":1}`, []string{"model:invalid"}},
		{"ErrUnitPriceMissing", `{"code":"x","name":"X","model":"per_unit"}`, []string{"unitPrice:required"}},
		{"ErrIncludedNegative", `{"code":"x","name":"X","model":"per_unit","unitPrice":1,"includedQuantity":"-1"}`, []string{"includedQuantity:invalid"}},
		{"ErrFirstTierZero", `{"code":"x","name":"X","model":"graduated","tiers":[{"upTo":0,"unitPrice":1},{"unitPrice":1}]}`, []string{"tiers[0].upTo:invalid"}},
		{"ErrNoTiers", `{"code":"x","name":"X","model":"volume","tiers":[]}`, []string{"tiers:required"}},
		{"ErrTooManyTiers", `{"code":"x","name":"X","model":"graduated","tiers":[` + strings.Repeat(`{"upTo":1,"unitPrice":1},`, catalog.MaxTiers) + `{"unitPrice":1}]}`,
			[]string{"tiers:too_many"}},
		{"ErrPackage", `{"code":"x","name":"X","model":"package","packageSize":0,"packagePrice":"-15","unitPrice":1}`,
			[]string{"packageSize:invalid", "packagePrice:invalid", "unitPrice:not_allowed"}},
		{"ErrPackageSizeMissing", `{"code":"x","name":"X","model":"package","packagePrice":"15"}`, []string{"packageSize:required"}},
		{"ErrThresholdNotADecimal", `{"code":"x","name":"X","model":"per_unit","unitPrice":1,"thresholds":["many"]}`, []string{"thresholds[0]:invalid"}},
		{"ErrTooManyThresholds", `{"code":"x","name":"X","model":"per_unit","unitPrice":1,"thresholds":[` + thresholds(catalog.MaxThresholds+1) + `]}`,
			[]string{"thresholds:too_many"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in catalog.SKUInput
			decode(t, tc.body, &in)
			checkFields(t, in.Validate(), tc.want)
		})
	}
}

func TestSKUUpdateInputValidate(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"OK/NameOnly", `{"name":"New"}`, nil},
		{"OK/NewRate", `{"model":"per_unit","unitPrice":"0.2","effectiveFrom":"2027-01-01"}`, nil},
		{"ErrRateWithoutModel", `{"unitPrice":"0.2"}`, []string{"model:required"}},
		{"ErrDateWithoutRate", `{"effectiveFrom":"2027-01-01"}`, []string{"effectiveFrom:not_allowed"}},
		{"ErrImmutable", `{"code":"y","currency":"USD"}`, []string{"code:immutable", "currency:immutable"}},
		{"ErrNameEmpty", `{"name":""}`, []string{"name:required"}},
		{"ErrUnitTooLong", `{"unit":"` + strings.Repeat("u", 51) + `"}`, []string{"unit:too_long"}},
		{"ErrThresholds", `{"thresholds":[5,5]}`, []string{"thresholds[1]:not_ascending"}},
		{"ErrRate", `{"model":"volume","tiers":[{"upTo":10,"unitPrice":1}],"effectiveFrom":"01/01/2027"}`,
			[]string{"tiers[0].upTo:invalid", "effectiveFrom:invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in catalog.SKUUpdateInput
			decode(t, tc.body, &in)
			checkFields(t, in.Validate(), tc.want)
		})
	}
}

// thresholds writes n ascending thresholds "1,2,...,n".
func thresholds(n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(i + 1)
	}
	return strings.Join(out, ",")
}

// checkFields fails unless err is Invalid with exactly the field:code pairs of want (nil: no
// error at all).
func checkFields(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected %v", err)
		}
		return
	}
	if apperr.KindOf(err) != apperr.Invalid {
		t.Fatalf("kind %v: %v", apperr.KindOf(err), err)
	}
	got := fieldsOf(err)
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing %s in %v", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want exactly %v", got, want)
	}
}

func TestPlanInputValidate(t *testing.T) {
	long := strings.Repeat("n", 201)
	fifty := make([]string, catalog.MaxCharges+1)
	for i := range fifty {
		fifty[i] = fmt.Sprintf(`{"skuId":"s%d"}`, i)
	}
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"OK", `{"code":"pro","name":"Pro","basePrice":30.00,"charges":[{"skuId":"a","includedQuantity":10}]}`, nil},
		{"OK/FreePlanInUSD", `{"code":"free","name":"Free","currency":"USD","billingCycle":"monthly","basePrice":"0"}`, nil},
		{"ErrCurrencyUnknown", `{"code":"pro","name":"Pro","currency":"XYZ","basePrice":"30"}`, []string{"currency:invalid"}},
		{"ErrCurrencyLowerCase", `{"code":"pro","name":"Pro","currency":"eur","basePrice":"30"}`, []string{"currency:invalid"}},
		{"ErrCurrencyName", `{"code":"pro","name":"Pro","currency":"Euro","basePrice":"30"}`, []string{"currency:invalid"}},
		{"ErrCodeMissing", `{"name":"Pro","basePrice":"30"}`, []string{"code:required"}},
		{"ErrCodeInvalid", `{"code":"-pro plan","name":"Pro","basePrice":"30"}`, []string{"code:invalid"}},
		{"ErrCodeTooLong", `{"code":"` + strings.Repeat("c", 65) + `","name":"Pro","basePrice":"30"}`, []string{"code:invalid"}},
		{"ErrNameMissing", `{"code":"pro","name":"  ","basePrice":"30"}`, []string{"name:required"}},
		{"ErrNameTooLong", `{"code":"pro","name":"` + long + `","basePrice":"30"}`, []string{"name:too_long"}},
		{"ErrNameControl", `{"code":"pro","name":"Pro\nPlan","basePrice":"30"}`, []string{"name:invalid"}},
		{"ErrBasePriceMissing", `{"code":"pro","name":"Pro"}`, []string{"basePrice:required"}},
		{"ErrBasePriceNotADecimal", `{"code":"pro","name":"Pro","basePrice":"30,00"}`, []string{"basePrice:invalid"}},
		{"ErrBasePriceNegative", `{"code":"pro","name":"Pro","basePrice":"-1"}`, []string{"basePrice:invalid"}},
		{"ErrBillingCycle", `{"code":"pro","name":"Pro","basePrice":"30","billingCycle":"yearly"}`, []string{"billingCycle:invalid"}},
		{"ErrTooManyCharges", `{"code":"pro","name":"Pro","basePrice":"30","charges":[` + strings.Join(fifty, ",") + `]}`, []string{"charges:too_many"}},
		{"ErrCharges", `{"code":"pro","name":"Pro","basePrice":"30","charges":[{"skuId":"a"},{"skuId":"a","includedQuantity":"-2"},{},{"skuId":"b","includedQuantity":"x"}]}`,
			[]string{"charges[1].skuId:duplicate", "charges[1].includedQuantity:invalid", "charges[2].skuId:required", "charges[3].includedQuantity:invalid"}},
		{"ErrEveryFieldAtOnce", `{"currency":"EURO","basePrice":"-1","billingCycle":"weekly"}`,
			[]string{"code:required", "name:required", "currency:invalid", "basePrice:invalid", "billingCycle:invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in catalog.PlanInput
			decode(t, tc.body, &in)
			checkFields(t, in.Validate(), tc.want)
		})
	}
}

func TestPlanUpdateInputValidate(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"OK/Nothing", `{}`, nil},
		{"OK/Currency", `{"currency":"USD","basePrice":"9.90","charges":[]}`, nil},
		{"ErrCurrencyUnknown", `{"currency":"XYZ"}`, []string{"currency:invalid"}},
		{"ErrCurrencyEmpty", `{"currency":""}`, []string{"currency:required"}},
		{"ErrNameEmpty", `{"name":" "}`, []string{"name:required"}},
		{"ErrBasePrice", `{"basePrice":"-0.01"}`, []string{"basePrice:invalid"}},
		{"ErrBillingCycle", `{"billingCycle":"daily"}`, []string{"billingCycle:invalid"}},
		{"ErrCharges", `{"charges":[{"skuId":""}]}`, []string{"charges[0].skuId:required"}},
		{"ErrImmutable", `{"code":"other","status":"published"}`, []string{"code:immutable", "status:immutable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in catalog.PlanUpdateInput
			decode(t, tc.body, &in)
			checkFields(t, in.Validate(), tc.want)
		})
	}
}

func TestOverrideInputValidate(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"OK", `{"model":"per_unit","unitPrice":"0.07","effectiveFrom":"2027-01-01"}`, nil},
		{"ErrModelMissing", `{"unitPrice":"0.07"}`, []string{"model:required"}},
		{"ErrModelUnknown", `{"model":"tiered","unitPrice":"0.07"}`, []string{"model:invalid"}},
		{"ErrNegative", `{"model":"package","packageSize":0,"packagePrice":"-1"}`, []string{"packageSize:invalid", "packagePrice:invalid"}},
		{"ErrEffectiveFrom", `{"model":"per_unit","unitPrice":1,"effectiveFrom":"2027-02-30"}`, []string{"effectiveFrom:invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in catalog.OverrideInput
			decode(t, tc.body, &in)
			checkFields(t, in.Validate(), tc.want)
		})
	}
}

func version(from string, created time.Time, price string) catalog.RateVersion {
	p, _ := money.Parse(price)
	return catalog.RateVersion{EffectiveFrom: from, CreatedAt: created, Rate: pricing.Rate{Model: pricing.PerUnit, UnitPrice: &p}}
}

func TestSKURateAt(t *testing.T) {
	t0 := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	k := &catalog.SKU{Rates: []catalog.RateVersion{ // newest first, as the service keeps them
		version("2026-12-01", t0.Add(3*time.Hour), "0.30"),
		version("2026-11-15", t0.Add(2*time.Hour), "0.25"),
		version("2026-10-01", t0.Add(time.Hour), "0.20"), // recorded later: replaces the one below
		version("2026-10-01", t0, "0.15"),
	}}
	for _, tc := range []struct{ period, want string }{
		{"2026-09", ""},
		{"2026-10", "0.20"},
		{"2026-11", "0.20"}, // 0.25 starts mid-November: it applies from December...
		{"2026-12", "0.30"}, // ... where 0.30 (dated December 1st) is newer still
		{"2027-03", "0.30"},
	} {
		v, ok := k.RateAt(MustPeriod(t, tc.period))
		got := ""
		if ok {
			got = v.UnitPrice.String()
		}
		if got != tc.want {
			t.Errorf("RateAt(%s) = %q, want %q", tc.period, got, tc.want)
		}
	}
}

func TestPlanChargeApply(t *testing.T) {
	r := pricing.Rate{Model: pricing.PerUnit, IncludedQuantity: MustDecimal(t, "50")}
	q := MustDecimal(t, "10")
	if got := (catalog.PlanCharge{}).Apply(r); !got.IncludedQuantity.Equal(MustDecimal(t, "50")) {
		t.Fatalf("no plan quantity: %s", got.IncludedQuantity)
	}
	if got := (catalog.PlanCharge{IncludedQuantity: &q}).Apply(r); !got.IncludedQuantity.Equal(q) {
		t.Fatalf("plan quantity replaces the SKU's: %s", got.IncludedQuantity)
	}
}

func storageRate(tb testing.TB) pricing.Rate {
	d := func(s string) *money.Decimal { v := MustDecimal(tb, s); return &v }
	return pricing.Rate{Model: pricing.Graduated, IncludedQuantity: MustDecimal(tb, "50"), Tiers: []pricing.Tier{
		{UpTo: d("100"), UnitPrice: MustDecimal(tb, "0.10")},
		{UpTo: d("1000"), UnitPrice: MustDecimal(tb, "0.08")},
		{UnitPrice: MustDecimal(tb, "0.05")},
	}}
}

func tierPrices(r *pricing.Rate) []string {
	var out []string
	for _, t := range r.Tiers {
		out = append(out, t.UnitPrice.Reduce().String())
	}
	return out
}

// TestEntityPrices checks the SPEC 15 chain: D 10 %, P 20 %, T under P.
func TestEntityPrices(t *testing.T) {
	list := storageRate(t)
	fD, fP := pricing.Factor(MustDecimal(t, "10")), pricing.Factor(MustDecimal(t, "20"))
	flat := func(d ...money.Decimal) []money.Decimal { return d }
	override := pricing.Rate{Model: pricing.PerUnit, UnitPrice: func() *money.Decimal { v := MustDecimal(t, "0.07"); return &v }()}
	for _, tc := range []struct {
		name      string
		typ       access.EntityType
		above     []money.Decimal
		own       money.Decimal
		override  *pricing.Rate
		buy, sell []string
	}{
		{"OK/Platform", access.Platform, nil, money.NewFromInt(1), nil, nil, []string{"0.1", "0.08", "0.05"}},
		{"OK/Distributor", access.Distributor, nil, fD, nil, []string{"0.1", "0.08", "0.05"}, []string{"0.11", "0.088", "0.055"}},
		{"OK/Partner", access.Partner, flat(fD), fP, nil, []string{"0.11", "0.088", "0.055"}, []string{"0.132", "0.1056", "0.066"}},
		{"OK/Tenant", access.Tenant, flat(fD, fP), money.NewFromInt(1), nil, []string{"0.132", "0.1056", "0.066"}, []string{"0.132", "0.1056", "0.066"}},
		{"OK/TenantOverride", access.Tenant, flat(fD, fP), money.NewFromInt(1), &override, []string{"0.132", "0.1056", "0.066"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buy, sell := catalog.EntityPrices(tc.typ, list, tc.above, tc.own, tc.override)
			if tc.buy == nil {
				if buy != nil {
					t.Fatalf("buy %v, want none", buy)
				}
			} else if got := tierPrices(buy); !equal(got, tc.buy) {
				t.Fatalf("buy %v, want %v", got, tc.buy)
			}
			if tc.override != nil {
				if sell.Model != pricing.PerUnit || !sell.UnitPrice.Equal(*tc.override.UnitPrice) {
					t.Fatalf("sell %+v, want the override", sell)
				}
				return
			}
			if got := tierPrices(&sell); !equal(got, tc.sell) {
				t.Fatalf("sell %v, want %v", got, tc.sell)
			}
			if !sell.IncludedQuantity.Equal(MustDecimal(t, "50")) {
				t.Fatal("quantities are not scaled")
			}
		})
	}
	// The scaled tenant rate charges exactly the SPEC 15 tenant amount: 92.00 x 1.32 = 121.44.
	_, sell := catalog.EntityPrices(access.Tenant, list, []money.Decimal{fD, fP}, money.NewFromInt(1), nil)
	c, err := sell.Charge(MustDecimal(t, "1250"))
	if err != nil || !c.Amount.Equal(MustDecimal(t, "121.44")) {
		t.Fatalf("tenant charge %s, %v", c.Amount, err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOverrideRateAt(t *testing.T) {
	r1 := pricing.Rate{Model: pricing.PerUnit}
	t0 := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	o := &catalog.Override{Versions: []catalog.OverrideVersion{
		{EffectiveFrom: "2027-01-01", CreatedAt: t0.Add(time.Hour)}, // ended from January
		{EffectiveFrom: "2026-11-01", Rate: &r1, CreatedAt: t0},
	}}
	for per, want := range map[string]bool{"2026-10": false, "2026-11": true, "2026-12": true, "2027-01": false} {
		if got := o.RateAt(MustPeriod(t, per)) != nil; got != want {
			t.Errorf("override in effect in %s: %v, want %v", per, got, want)
		}
	}
}

// admin is a platform admin principal; viewer a platform viewer.
var (
	admin  = access.Principal{UserID: "usr_admin", Role: access.PlatformAdmin, ScopeID: "platform", ScopeType: access.Platform, ScopePath: "/platform/"}
	viewer = access.Principal{UserID: "usr_view", Role: access.PlatformViewer, ScopeID: "platform", ScopeType: access.Platform, ScopePath: "/platform/"}
)

func newService(now time.Time) (*catalog.Service, *fakeStore) {
	st := newFakeStore()
	return &catalog.Service{Store: st, PlatformCurrency: "EUR", Now: func() time.Time { return now }}, st
}

func mustSKU(t *testing.T, s *catalog.Service, body string) *catalog.SKU {
	t.Helper()
	var in catalog.SKUInput
	decode(t, body, &in)
	k, err := s.CreateSKU(context.Background(), admin, in)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestServiceSKUs(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	s, _ := newService(now)
	k := mustSKU(t, s, `{"code":"api","name":"API","model":"per_unit","unitPrice":"0.10"}`)
	if k.EffectiveFrom != "2026-11-01" || k.Currency != "EUR" || len(k.Rates) != 1 {
		t.Fatalf("a new SKU is priced from the current period in the platform currency: %+v", k)
	}
	t.Run("ErrCodeTaken", func(t *testing.T) {
		var in catalog.SKUInput
		decode(t, `{"code":"API","name":"Again","model":"per_unit","unitPrice":1}`, &in)
		if _, err := s.CreateSKU(ctx, admin, in); apperr.As(err).Code != "code_taken" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrForbidden", func(t *testing.T) {
		var in catalog.SKUInput
		decode(t, `{"code":"other","name":"Other","model":"per_unit","unitPrice":1}`, &in)
		if _, err := s.CreateSKU(ctx, viewer, in); !apperr.Is(err, apperr.Forbidden) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrEffectiveFromInPast", func(t *testing.T) {
		var in catalog.SKUUpdateInput
		decode(t, `{"model":"per_unit","unitPrice":"0.2","effectiveFrom":"2026-10-31"}`, &in)
		_, err := s.UpdateSKU(ctx, admin, k.ID, in)
		if !fieldsOf(err)["effectiveFrom:in_past"] {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("OK/RateChangeDefaultsToNextPeriod", func(t *testing.T) {
		var in catalog.SKUUpdateInput
		decode(t, `{"model":"per_unit","unitPrice":"0.2"}`, &in)
		got, err := s.UpdateSKU(ctx, admin, k.ID, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Rates) != 2 || got.Rates[0].EffectiveFrom != "2026-12-01" {
			t.Fatalf("rates %+v", got.Rates)
		}
		if !got.UnitPrice.Equal(MustDecimal(t, "0.10")) || got.EffectiveFrom != "2026-11-01" {
			t.Fatalf("the top level shows the rate in effect now: %s from %s", got.UnitPrice, got.EffectiveFrom)
		}
		dec, _ := got.RateAt(MustPeriod(t, "2026-12"))
		if !dec.UnitPrice.Equal(MustDecimal(t, "0.2")) {
			t.Fatalf("December rate %s", dec.UnitPrice)
		}
	})
}

func TestServicePlans(t *testing.T) {
	ctx := context.Background()
	s, st := newService(time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC))
	eur := mustSKU(t, s, `{"code":"storage","name":"Storage","model":"per_unit","unitPrice":"0.10"}`)
	usd := mustSKU(t, s, `{"code":"storage-usd","name":"Storage","currency":"USD","model":"per_unit","unitPrice":"0.10"}`)
	var in catalog.PlanInput
	decode(t, `{"code":"pro","name":"Pro","basePrice":"30.00","charges":[{"skuId":"`+eur.ID+`"}]}`, &in)
	pl, err := s.CreatePlan(ctx, admin, in)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Status != catalog.PlanDraft || pl.Charges[0].SKUCode != "storage" || st.skus[eur.ID].PlanCount != 1 {
		t.Fatalf("plan %+v, refs %d", pl, st.skus[eur.ID].PlanCount)
	}
	t.Run("ErrChargeInOtherCurrency", func(t *testing.T) {
		var bad catalog.PlanInput
		decode(t, `{"code":"pro-usd","name":"Pro","basePrice":"30","charges":[{"skuId":"`+usd.ID+`"},{"skuId":"sku_none"}]}`, &bad)
		_, err := s.CreatePlan(ctx, admin, bad)
		got := fieldsOf(err)
		if apperr.KindOf(err) != apperr.Unprocessable || !got["charges[0].skuId:currency_mismatch"] || !got["charges[1].skuId:not_found"] {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrDraftHiddenFromViewers", func(t *testing.T) {
		if _, err := s.GetPlan(ctx, viewer, pl.ID); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("got %v", err)
		}
		items, _, err := s.ListPlans(ctx, viewer, listingQuery(), nil)
		if err != nil || len(items) != 0 {
			t.Fatalf("viewer lists %d plans, %v", len(items), err)
		}
	})
	t.Run("ErrSKUInUse", func(t *testing.T) {
		if err := s.DeleteSKU(ctx, admin, eur.ID); apperr.As(err).Code != "sku_in_use" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("OK/DraftEditable", func(t *testing.T) {
		name := "Pro 2"
		empty := []catalog.ChargeInput{}
		got, err := s.UpdatePlan(ctx, admin, pl.ID, catalog.PlanUpdateInput{Name: &name, Charges: &empty})
		if err != nil || got.Name != "Pro 2" || len(got.Charges) != 0 || st.skus[eur.ID].PlanCount != 0 {
			t.Fatalf("%+v %v", got, err)
		}
		again := []catalog.ChargeInput{{SKUID: eur.ID}}
		if _, err := s.UpdatePlan(ctx, admin, pl.ID, catalog.PlanUpdateInput{Charges: &again}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrPublishedFrozen", func(t *testing.T) {
		if _, err := s.PublishPlan(ctx, admin, pl.ID); err != nil {
			t.Fatal(err)
		}
		name := "Renamed"
		if _, err := s.UpdatePlan(ctx, admin, pl.ID, catalog.PlanUpdateInput{Name: &name}); apperr.As(err).Code != "plan_frozen" {
			t.Fatalf("got %v", err)
		}
		if _, err := s.PublishPlan(ctx, admin, pl.ID); apperr.As(err).Code != "plan_not_draft" {
			t.Fatalf("publish twice: %v", err)
		}
		if err := s.DeletePlan(ctx, admin, pl.ID); apperr.As(err).Code != "plan_not_draft" {
			t.Fatalf("delete published: %v", err)
		}
		if _, err := s.GetPlan(ctx, viewer, pl.ID); err != nil {
			t.Fatalf("a published plan is visible to viewers: %v", err)
		}
	})
	t.Run("OK/Retire", func(t *testing.T) {
		got, err := s.RetirePlan(ctx, admin, pl.ID)
		if err != nil || got.Status != catalog.PlanRetired || got.RetiredAt == nil {
			t.Fatalf("%+v %v", got, err)
		}
		if _, err := s.RetirePlan(ctx, admin, pl.ID); apperr.As(err).Code != "plan_not_published" {
			t.Fatalf("retire twice: %v", err)
		}
	})
}

func listingQuery() listing.Query { return listing.Query{} }
