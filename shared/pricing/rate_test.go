package pricing_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

func TestRateValidate(t *testing.T) {
	d := func(s string) *money.Decimal { return MustDecimalPtr(t, s) }
	for _, tc := range []struct {
		name string
		rate pricing.Rate
		want []string // "field:code", in order; nil means valid
	}{
		{"OK/per_unit", pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("0.25")}, nil},
		{"OK/per_unit free", pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("0")}, nil},
		{"OK/graduated", StorageRate(t), nil},
		{"OK/graduated single open tier", pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "-@1+5")}, nil},
		{"OK/graduated fractional bounds", pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "0.5@1", "0.75@2", "-@3")}, nil},
		{"OK/volume", pricing.Rate{Model: pricing.Volume, Tiers: MustTiers(t, "100@1", "-@0.5+10")}, nil},
		{"OK/package", pricing.Rate{Model: pricing.Package, PackageSize: d("100"), PackagePrice: d("15")}, nil},
		{"ErrModelMissing", pricing.Rate{}, []string{"model:required"}},
		{"ErrModelUnknown", pricing.Rate{Model: "tiered", IncludedQuantity: *d("-1")},
			[]string{"includedQuantity:invalid", "model:invalid"}},
		{"ErrPerUnitPriceMissing", pricing.Rate{Model: pricing.PerUnit}, []string{"unitPrice:required"}},
		{"ErrPerUnitNegatives", pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("-0.01"), IncludedQuantity: *d("-5")},
			[]string{"includedQuantity:invalid", "unitPrice:invalid"}},
		{"ErrPerUnitForeignFields",
			pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("1"), Tiers: MustTiers(t, "-@1"), PackageSize: d("1"), PackagePrice: d("1")},
			[]string{"tiers:not_allowed", "packageSize:not_allowed", "packagePrice:not_allowed"}},
		{"ErrGraduatedNoTiers", pricing.Rate{Model: pricing.Graduated}, []string{"tiers:required"}},
		{"ErrVolumeNoTiers", pricing.Rate{Model: pricing.Volume, Tiers: []pricing.Tier{}}, []string{"tiers:required"}},
		{"ErrTiersOrderAndOpenness", pricing.Rate{Model: pricing.Graduated,
			Tiers: MustTiers(t, "100@1", "100@1", "-@1", "50@1")},
			[]string{"tiers[1].upTo:invalid", "tiers[2].upTo:required", "tiers[3].upTo:invalid", "tiers[3].upTo:invalid"}},
		{"ErrTiersDecreasing", pricing.Rate{Model: pricing.Volume, Tiers: MustTiers(t, "10@1", "5@1", "-@1")},
			[]string{"tiers[1].upTo:invalid"}},
		{"ErrTiersLastClosed", pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "10@1", "20@1")},
			[]string{"tiers[1].upTo:invalid"}},
		{"ErrFirstTierNotPositive", pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "0@1", "-@1")},
			[]string{"tiers[0].upTo:invalid"}},
		{"ErrFirstTierNegative", pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "-3@1", "-@1")},
			[]string{"tiers[0].upTo:invalid"}},
		{"ErrTierNegativePrices", pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "10@-1+-2", "-@-0.5")},
			[]string{"tiers[0].unitPrice:invalid", "tiers[0].flatFee:invalid", "tiers[1].unitPrice:invalid"}},
		{"ErrVolumeForeignFields", pricing.Rate{Model: pricing.Volume, Tiers: MustTiers(t, "-@1"), UnitPrice: d("1"), PackagePrice: d("2")},
			[]string{"unitPrice:not_allowed", "packagePrice:not_allowed"}},
		{"ErrPackageMissing", pricing.Rate{Model: pricing.Package}, []string{"packageSize:required", "packagePrice:required"}},
		{"ErrPackageSizeZero", pricing.Rate{Model: pricing.Package, PackageSize: d("0"), PackagePrice: d("-1")},
			[]string{"packageSize:invalid", "packagePrice:invalid"}},
		{"ErrPackageSizeNegative", pricing.Rate{Model: pricing.Package, PackageSize: d("-10"), PackagePrice: d("1")},
			[]string{"packageSize:invalid"}},
		{"ErrPackageForeignFields",
			pricing.Rate{Model: pricing.Package, PackageSize: d("1"), PackagePrice: d("1"), UnitPrice: d("1"), Tiers: MustTiers(t, "-@1")},
			[]string{"unitPrice:not_allowed", "tiers:not_allowed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rate.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %v", tc.want)
			}
			assertStrings(t, "field errors", fieldCodes(err), tc.want)
			for _, fe := range pricing.FieldErrors(err) {
				if !strings.Contains(err.Error(), fe.Field+": ") || fe.Message == "" {
					t.Errorf("error text %q lacks %q with a message", err, fe.Field)
				}
			}
			// Charge refuses the same rate with the same errors.
			if _, cerr := tc.rate.Charge(*d("1")); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Charge error = %v, want %v", cerr, err)
			}
		})
	}
}

func TestRateJSON(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		q      string
		amount string
		want   []string // validation errors, nil when valid
	}{
		{"OK/graduated with numbers and strings",
			`{"model":"graduated","tiers":[{"upTo":100,"unitPrice":"0.10"},{"upTo":"1000","unitPrice":0.08},{"upTo":null,"unitPrice":"0.05"}],"includedQuantity":50}`,
			"1250", "92.00", nil},
		{"OK/per_unit without includedQuantity", `{"model":"per_unit","unitPrice":"0.5"}`, "3", "1.5", nil},
		{"OK/package", `{"model":"package","packageSize":"10","packagePrice":"4.99"}`, "11", "9.98", nil},
		{"ErrPerUnitNullPrice", `{"model":"per_unit","unitPrice":null}`, "1", "", []string{"unitPrice:required"}},
		{"ErrGraduatedMissingUpTo", `{"model":"graduated","tiers":[{"unitPrice":"1"},{"unitPrice":"2"}]}`, "1", "",
			[]string{"tiers[0].upTo:required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r pricing.Rate
			dec := json.NewDecoder(strings.NewReader(tc.body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			c, err := r.Charge(MustDecimal(t, tc.q))
			if tc.want != nil {
				assertStrings(t, "field errors", fieldCodes(err), tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertEqualDecimal(t, "amount", c.Amount, tc.amount)
			// A valid rate survives a JSON round trip unchanged.
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back pricing.Rate
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			b2, _ := json.Marshal(back)
			if string(b) != string(b2) {
				t.Fatalf("round trip changed the rate:\n%s\n%s", b, b2)
			}
		})
	}
}

func TestFieldErrors(t *testing.T) {
	a := &pricing.FieldError{Field: "a", Code: pricing.CodeRequired, Message: "is required"}
	b := &pricing.FieldError{Field: "b", Code: pricing.CodeInvalid, Message: "is bad"}
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"OK/nil", nil, nil},
		{"OK/single", a, []string{"a:required"}},
		{"OK/joined", errors.Join(a, b), []string{"a:required", "b:invalid"}},
		{"OK/wrapped join", errors.Join(errors.Join(a), wrap(b)), []string{"a:required", "b:invalid"}},
		{"OK/other errors skipped", errors.Join(errors.New("x"), b), []string{"b:invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertStrings(t, "FieldErrors", fieldCodes(tc.err), tc.want)
		})
	}
	if got := a.Error(); got != "a: is required" {
		t.Fatalf("Error() = %q", got)
	}
}

func wrap(err error) error { return wrappedError{err} }

type wrappedError struct{ err error }

func (w wrappedError) Error() string { return "wrapped: " + w.err.Error() }
func (w wrappedError) Unwrap() error { return w.err }

func TestModelValid(t *testing.T) {
	for _, m := range pricing.Models {
		if !m.Valid() {
			t.Errorf("%s is not valid", m)
		}
	}
	for _, m := range []pricing.Model{"", "PER_UNIT", "tiered"} {
		if m.Valid() {
			t.Errorf("%q is valid", m)
		}
	}
}
