package money_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/channelbilling/cms/shared/money"
)

// MustParse parses s or fails the test.
func MustParse(tb testing.TB, s string) money.Decimal {
	tb.Helper()
	d, err := money.Parse(s)
	if err != nil {
		tb.Fatalf("Parse(%q): %v", s, err)
	}
	return d
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string // "" means an error is expected
	}{
		{"OK/integer", "12", "12"},
		{"OK/fraction keeps scale", "1.50", "1.50"},
		{"OK/negative", "-0.5", "-0.5"},
		{"OK/plus sign", "+3", "3"},
		{"OK/exponent", "1e3", "1000"},
		{"OK/negative exponent", "2.5E-2", "0.025"},
		{"OK/exponent with plus", "1.5e+2", "150"},
		{"OK/negative zero is zero", "-0.00", "0.00"},
		{"OK/leading zeros", "007.10", "7.10"},
		{"OK/34 significant digits", "1234567890123456789012345678901234", "1234567890123456789012345678901234"},
		{"OK/34 decimals", "0.0000000000000000000000000000000001", "0.0000000000000000000000000000000001"},
		{"OK/trailing zeros beyond max scale are dropped", "1.5" + strings.Repeat("0", 40), "1.5"},
		{"OK/zero with huge negative exponent", "0e-99", "0"},
		{"OK/zero with positive exponent", "0e5", "0"},
		{"ErrEmpty", "", ""},
		{"ErrSpace", " 1", ""},
		{"ErrTrailingSpace", "1 ", ""},
		{"ErrLonePoint", ".", ""},
		{"ErrNoLeadingDigit", ".5", ""},
		{"ErrNoTrailingDigit", "5.", ""},
		{"ErrComma", "1,5", ""},
		{"ErrInfinity", "Infinity", ""},
		{"ErrNaN", "NaN", ""},
		{"ErrHex", "0x10", ""},
		{"ErrDoubleSign", "--1", ""},
		{"ErrEmptyExponent", "1e", ""},
		{"ErrHugeExponent", "1e99999", ""},
		{"ErrExponentOutOfRange", "1e40", ""},
		{"ErrTooManyDigits", "12345678901234567890123456789012345", ""},
		{"ErrTooManyDecimals", "0.00000000000000000000000000000000001", ""},
		{"ErrTooLong", strings.Repeat("1", 200), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := money.Parse(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %s, want an error", tc.in, d)
				}
				if !errors.Is(err, money.ErrInvalidDecimal) {
					t.Fatalf("error %v does not wrap ErrInvalidDecimal", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := d.String(); got != tc.want {
				t.Fatalf("Parse(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestZeroValue(t *testing.T) {
	var z money.Decimal
	if !z.IsZero() || z.IsNeg() || z.Sign() != 0 {
		t.Fatalf("zero value is not 0: %s", z)
	}
	if got := z.String(); got != "0" {
		t.Fatalf("String() = %q, want \"0\"", got)
	}
	if got := z.Add(money.NewFromInt(2)).String(); got != "2" {
		t.Fatalf("0 + 2 = %s", got)
	}
	b, err := json.Marshal(z)
	if err != nil || string(b) != `"0"` {
		t.Fatalf("Marshal(zero) = %s, %v", b, err)
	}
	if !z.Equal(money.Zero) {
		t.Fatal("zero value differs from money.Zero")
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		unscaled int64
		scale    uint8
		want     string
	}{
		{"OK/cents", 12144, 2, "121.44"},
		{"OK/integer", 7, 0, "7"},
		{"OK/negative", -5, 1, "-0.5"},
		{"OK/negative zero", 0, 3, "0.000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := money.New(tc.unscaled, tc.scale).String(); got != tc.want {
				t.Fatalf("New(%d, %d) = %s, want %s", tc.unscaled, tc.scale, got, tc.want)
			}
		})
	}
	if got := money.NewFromInt(-42).String(); got != "-42" {
		t.Fatalf("NewFromInt(-42) = %s", got)
	}
}

func TestArithmetic(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   string
		x, y string
		want string
	}{
		{"OK/add is exact", "+", "0.1", "0.2", "0.3"},
		{"OK/add keeps the larger scale", "+", "1.5", "2.25", "3.75"},
		{"OK/sub to negative", "-", "1", "1.25", "-0.25"},
		{"OK/sub to zero", "-", "1.10", "1.1", "0.00"},
		{"OK/sub to zero with exponents", "-", "1e3", "1E3", "0"},
		{"OK/mul", "*", "30.00", "10", "300.00"},
		{"OK/mul factors", "*", "1.1", "1.2", "1.32"},
		{"OK/div exact", "/", "6300", "100", "63"},
		{"OK/div keeps 34 digits", "/", "6300", "31", "203.2258064516129032258064516129032"},
		{"OK/div third", "/", "1", "3", "0.3333333333333333333333333333333333"},
		{"OK/div negative", "/", "-1", "8", "-0.125"},
		{"OK/div keeps the dividend scale", "/", "30.00", "1", "30.00"},
		{"OK/div ideal scale", "/", "300.00", "10", "30.00"},
		{"OK/div by a fraction", "/", "1200", "0.5", "2400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, y := MustParse(t, tc.x), MustParse(t, tc.y)
			var got money.Decimal
			switch tc.op {
			case "+":
				got = x.Add(y)
			case "-":
				got = x.Sub(y)
			case "*":
				got = x.Mul(y)
			case "/":
				var err error
				if got, err = x.Div(y); err != nil {
					t.Fatal(err)
				}
			}
			if got.String() != tc.want {
				t.Fatalf("%s %s %s = %s, want %s", tc.x, tc.op, tc.y, got, tc.want)
			}
		})
	}
	t.Run("ErrDivisionByZero", func(t *testing.T) {
		if _, err := money.NewFromInt(1).Div(money.New(0, 2)); !errors.Is(err, money.ErrDivisionByZero) {
			t.Fatalf("1/0: err = %v, want ErrDivisionByZero", err)
		}
	})
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		name string
		x, y string
		want int
	}{
		{"OK/equal at different scales", "1.5", "1.50", 0},
		{"OK/less", "-2", "1", -1},
		{"OK/greater", "0.0001", "0", 1},
		{"OK/zero and negative zero", "0", "-0.0", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, y := MustParse(t, tc.x), MustParse(t, tc.y)
			if got := x.Cmp(y); got != tc.want {
				t.Fatalf("Cmp(%s, %s) = %d, want %d", tc.x, tc.y, got, tc.want)
			}
			if got := x.Equal(y); got != (tc.want == 0) {
				t.Fatalf("Equal(%s, %s) = %v", tc.x, tc.y, got)
			}
		})
	}
	a, b := money.NewFromInt(1), money.NewFromInt(2)
	if money.Max(a, b) != b || money.Min(a, b) != a {
		t.Fatal("Max/Min pick the wrong operand")
	}
	if !money.NewFromInt(-1).IsNeg() || money.NewFromInt(1).IsNeg() || money.Zero.IsNeg() {
		t.Fatal("IsNeg is wrong")
	}
	if got := MustParse(t, "-2.5").Abs().String(); got != "2.5" {
		t.Fatalf("Abs(-2.5) = %s", got)
	}
	if got := MustParse(t, "2.5").Neg().String(); got != "-2.5" {
		t.Fatalf("Neg(2.5) = %s", got)
	}
	for in, want := range map[string]string{"1.100": "1.1", "2.00": "2", "1200": "1200", "0.000": "0", "-0.50": "-0.5"} {
		if got := MustParse(t, in).Reduce().String(); got != want {
			t.Errorf("Reduce(%s) = %s, want %s", in, got, want)
		}
	}
	if got := money.Zero.Neg().String(); got != "0" {
		t.Fatalf("Neg(0) = %s", got)
	}
}

func TestRound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     string
		places int
		want   string
	}{
		{"OK/half away from zero up", "2.345", 2, "2.35"},
		{"OK/half away from zero negative", "-2.345", 2, "-2.35"},
		{"OK/half on an even digit still goes up", "0.125", 2, "0.13"},
		{"OK/below half", "2.3449999", 2, "2.34"},
		{"OK/pads to places", "92", 2, "92.00"},
		{"OK/carry", "9.995", 2, "10.00"},
		{"OK/worked example seats", "203.2258064516129032258064516129032", 2, "203.23"},
		{"OK/worked example tenant", "268.2580645161290322580645161290322", 2, "268.26"},
		{"OK/small to zero", "0.004", 2, "0.00"},
		{"OK/small negative to zero has no sign", "-0.004", 2, "0.00"},
		{"OK/tiny rounds half up", "0.005", 2, "0.01"},
		{"OK/tiny far below", "0.0000001", 2, "0.00"},
		{"OK/integer places", "2.5", 0, "3"},
		{"OK/negative integer places", "-2.5", 0, "-3"},
		{"OK/three places", "1.0005", 3, "1.001"},
		{"OK/tens", "15", -1, "20"},
		{"OK/huge places clamp", "1.5", 1000, "1.5" + strings.Repeat("0", 99)},
		{"OK/big integer", "1234567890123456789012345678901234", 2, "1234567890123456789012345678901234.00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MustParse(t, tc.in).Round(tc.places).String(); got != tc.want {
				t.Fatalf("Round(%s, %d) = %s, want %s", tc.in, tc.places, got, tc.want)
			}
		})
	}
}

func TestCeilFloor(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          string
		ceil, floor string
	}{
		{"OK/integer", "2", "2", "2"},
		{"OK/integer with zeros", "2.00", "2", "2"},
		{"OK/fraction", "2.1", "3", "2"},
		{"OK/negative fraction", "-2.1", "-2", "-3"},
		{"OK/small negative", "-0.5", "0", "-1"},
		{"OK/zero", "0", "0", "0"},
		{"OK/exponent", "1e3", "1000", "1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := MustParse(t, tc.in)
			if got := d.Ceil().String(); got != tc.ceil {
				t.Errorf("Ceil(%s) = %s, want %s", tc.in, got, tc.ceil)
			}
			if got := d.Floor().String(); got != tc.floor {
				t.Errorf("Floor(%s) = %s, want %s", tc.in, got, tc.floor)
			}
			if got, want := d.IsInteger(), tc.ceil == tc.floor; got != want {
				t.Errorf("IsInteger(%s) = %v, want %v", tc.in, got, want)
			}
		})
	}
}

func TestUnmarshalJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string // "" means an error is expected
	}{
		{"OK/string", `"1.5"`, "1.5"},
		{"OK/number", `1.5`, "1.5"},
		{"OK/number keeps scale", `1.50`, "1.50"},
		{"OK/number exponent", `1e2`, "100"},
		{"OK/number beyond float64 precision", `0.1000000000000000000000000000000001`, "0.1000000000000000000000000000000001"},
		{"OK/big integer beyond float64", `12345678901234567890123`, "12345678901234567890123"},
		{"OK/negative string", `"-3"`, "-3"},
		{"ErrBool", `true`, ""},
		{"ErrObject", `{}`, ""},
		{"ErrArray", `[1]`, ""},
		{"ErrEmptyString", `""`, ""},
		{"ErrGarbageString", `"abc"`, ""},
		{"ErrSpaceInString", `" 1"`, ""},
		{"ErrNaNString", `"NaN"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v struct {
				Q money.Decimal `json:"q"`
			}
			err := json.Unmarshal([]byte(`{"q":`+tc.in+`}`), &v)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("Unmarshal(%s) = %s, want an error", tc.in, v.Q)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tc.in, err)
			}
			if got := v.Q.String(); got != tc.want {
				t.Fatalf("Unmarshal(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
	t.Run("OK/null leaves the value", func(t *testing.T) {
		d := money.NewFromInt(7)
		if err := json.Unmarshal([]byte(`null`), &d); err != nil || d.String() != "7" {
			t.Fatalf("Unmarshal(null) = %s, %v", d, err)
		}
		var p *money.Decimal
		if err := json.Unmarshal([]byte(`null`), &p); err != nil || p != nil {
			t.Fatalf("Unmarshal(null) into a pointer = %v, %v", p, err)
		}
	})
}

func TestMarshal(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"OK/plain", "121.44", `"121.44"`},
		{"OK/exponent is expanded", "1e3", `"1000"`},
		{"OK/small is expanded", "1.5e-7", `"0.00000015"`},
		{"OK/negative", "-2.50", `"-2.50"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(MustParse(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("Marshal(%s) = %s, want %s", tc.in, b, tc.want)
			}
			text, err := MustParse(t, tc.in).MarshalText()
			if err != nil || `"`+string(text)+`"` != tc.want {
				t.Fatalf("MarshalText(%s) = %s, %v", tc.in, text, err)
			}
			var back money.Decimal
			if err := back.UnmarshalText(text); err != nil || !back.Equal(MustParse(t, tc.in)) {
				t.Fatalf("UnmarshalText(%s) = %s, %v", text, back, err)
			}
		})
	}
}

// TestSharedConcurrently reads one value from many goroutines; run with -race.
func TestSharedConcurrently(t *testing.T) {
	shared := MustParse(t, "203.2258064516129032258064516129032")
	factor := MustParse(t, "1.1")
	var wg sync.WaitGroup
	results := make([]string, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = shared.Mul(factor).Round(2).String() + shared.Add(factor).String()
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r != results[0] {
			t.Fatalf("results differ: %q vs %q", r, results[0])
		}
	}
	if shared.String() != "203.2258064516129032258064516129032" {
		t.Fatalf("shared value changed: %s", shared)
	}
}
