package money_test

import (
	"encoding/json"
	"testing"

	"github.com/channelbilling/cms/shared/money"
)

// FuzzParse checks that any accepted text round-trips through String, JSON and rounding without
// changing value, and that nothing panics on any input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "-0.00", "121.44", "1e3", "2.5E-2", "1234567890123456789012345678901234",
		"0.0000000000000000000000000000000001", "9.995", "-0.005", "1e9999", "NaN", ".5", "1,5", ""} {
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, s string, places uint8) {
		d, err := money.Parse(s)
		if err != nil {
			return
		}
		back, err := money.Parse(d.String())
		if err != nil || !back.Equal(d) || back.String() != d.String() {
			t.Fatalf("String %q of %q does not parse back: %v", d.String(), s, err)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON money.Decimal
		if err := json.Unmarshal(b, &fromJSON); err != nil || !fromJSON.Equal(d) {
			t.Fatalf("JSON %s does not decode back: %v", b, err)
		}
		if err := json.Unmarshal([]byte(s), &fromJSON); err == nil && !fromJSON.Equal(d) {
			t.Fatalf("JSON number %s decodes to %s", s, fromJSON)
		}
		p := int(places % 40)
		r := d.Round(p)
		// Rounding moves the value by at most half a unit of the last place.
		half := money.New(5, uint8(p+1))
		if r.Sub(d).Abs().Cmp(half) > 0 {
			t.Fatalf("Round(%s, %d) = %s", d, p, r)
		}
		if !r.Round(p).Equal(r) {
			t.Fatalf("Round is not idempotent on %s", r)
		}
		if c := d.Ceil(); c.Cmp(d) < 0 || c.Sub(d).Cmp(money.NewFromInt(1)) >= 0 || !c.IsInteger() {
			t.Fatalf("Ceil(%s) = %s", d, c)
		}
	})
}
