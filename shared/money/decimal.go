package money

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/cockroachdb/apd/v3"
)

// Precision is the number of significant digits kept by Add, Sub, Mul and Div.
const Precision = 34

// Limits on what Parse accepts. They keep every parsed value inside the range where the 34-digit
// arithmetic is exact for sums and products of a few operands, and keep hostile input (a thousand
// digits, an exponent of a billion) from costing time or memory.
const (
	// MaxSignificantDigits is the largest number of significant digits a parsed value may have.
	MaxSignificantDigits = Precision
	// MaxScale is the largest number of digits after the decimal point a parsed value may have
	// (trailing zeros are not counted).
	MaxScale = 34
	// MaxIntegerDigits is the largest number of digits before the decimal point a parsed value may
	// have.
	MaxIntegerDigits = 34
	// maxTextLen bounds the length of the text Parse looks at.
	maxTextLen = 128
	// maxExponentDigits bounds the digits of an exponent ("1e9999" at most).
	maxExponentDigits = 4
	// maxRoundPlaces bounds the places Round works with; larger values are clamped.
	maxRoundPlaces = 100
)

// ErrInvalidDecimal is wrapped by every error Parse and the unmarshalers return.
var ErrInvalidDecimal = errors.New("invalid decimal")

// ErrDivisionByZero is returned by Div when the divisor is zero.
var ErrDivisionByZero = errors.New("division by zero")

// arith is the context of Add, Sub, Mul, Div and Ceil. Traps are off: the only conditions finite
// operands can raise here are Inexact/Rounded (expected, at the 34th digit) and overflow or
// underflow beyond 10^±100000, which no billing value reaches; with traps off such a result
// saturates (to infinity or zero) instead of forcing an error return on every addition.
var arith = apd.Context{
	Precision:   Precision,
	MaxExponent: apd.MaxExponent,
	MinExponent: apd.MinExponent,
	Traps:       0,
	Rounding:    apd.RoundHalfEven,
}

// Decimal is an exact decimal number. The zero value is 0 and ready to use. Decimals are
// immutable values: every method returns a new Decimal and never changes its receiver or its
// arguments, so they may be copied and shared between goroutines freely. Compare them with Cmp or
// Equal, never with ==, which compares representations (1.5 and 1.50 are equal but not ==).
type Decimal struct {
	d apd.Decimal
}

// Zero is the Decimal 0 (the same as the zero value).
var Zero = Decimal{}

// NewFromInt returns the Decimal equal to i.
func NewFromInt(i int64) Decimal {
	var r Decimal
	r.d.SetInt64(i)
	return r
}

// New returns the Decimal equal to unscaled * 10^-scale: New(12144, 2) is 121.44. The scale is a
// uint8 so that every call yields a representable value and New needs no error.
func New(unscaled int64, scale uint8) Decimal {
	var r Decimal
	r.d.SetFinite(unscaled, -int32(scale))
	return norm(r)
}

// Parse reads a decimal written as an optional sign, digits, an optional fraction and an optional
// exponent: "12", "-0.5", "1.50", "1e3", "2.5E-2". Leading and trailing spaces, a lone ".",
// "Infinity", "NaN" and hexadecimal are rejected. The value must have at most MaxSignificantDigits
// significant digits, at most MaxScale digits after the point and at most MaxIntegerDigits before
// it. The written scale is kept ("1.50" prints as "1.50"). On failure it returns the zero Decimal
// and an error wrapping ErrInvalidDecimal.
func Parse(s string) (Decimal, error) {
	if len(s) > maxTextLen {
		return Decimal{}, invalid(s, "too long")
	}
	if reason := checkSyntax(s); reason != "" {
		return Decimal{}, invalid(s, reason)
	}
	var r Decimal
	// BaseContext has precision 0: parsing never rounds.
	if _, _, err := apd.BaseContext.SetString(&r.d, s); err != nil {
		return Decimal{}, invalid(s, "out of range")
	}
	var reduced apd.Decimal
	reduced.Reduce(&r.d)
	if !reduced.IsZero() {
		nd := reduced.NumDigits()
		switch {
		case nd > MaxSignificantDigits:
			return Decimal{}, invalid(s, fmt.Sprintf("more than %d significant digits", MaxSignificantDigits))
		case reduced.Exponent < -MaxScale:
			return Decimal{}, invalid(s, fmt.Sprintf("more than %d digits after the point", MaxScale))
		case nd+int64(reduced.Exponent) > MaxIntegerDigits:
			return Decimal{}, invalid(s, fmt.Sprintf("more than %d digits before the point", MaxIntegerDigits))
		}
	}
	// Keep the written scale unless it is outside the limits (e.g. "1.5000...0" with 40 zeros
	// or "0e-99"), where the reduced form is kept instead.
	if r.d.Exponent < -MaxScale || r.d.Exponent > MaxIntegerDigits {
		r.d.Set(&reduced)
	}
	return norm(r), nil
}

// checkSyntax returns why s is not [+-]digits[.digits][(e|E)[+-]digits], or "" when it is.
func checkSyntax(s string) string {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	n := digits(s[i:])
	if n == 0 {
		return "expected a digit"
	}
	i += n
	if i < len(s) && s[i] == '.' {
		i++
		n = digits(s[i:])
		if n == 0 {
			return "expected a digit after the point"
		}
		i += n
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		n = digits(s[i:])
		if n == 0 {
			return "expected a digit in the exponent"
		}
		if n > maxExponentDigits {
			return "exponent out of range"
		}
		i += n
	}
	if i != len(s) {
		return "unexpected character"
	}
	return ""
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

func invalid(s, reason string) error {
	const show = 40
	if len(s) > show {
		s = s[:show] + "..."
	}
	return fmt.Errorf("%w %s: %s", ErrInvalidDecimal, strconv.Quote(s), reason)
}

// norm gives zero one sign and no positive exponent, so that neither "-0.00" nor "000" (the
// plain form of 0E+2, which 1e2 - 1e2 yields) ever appears in output.
func norm(r Decimal) Decimal {
	if r.d.IsZero() {
		r.d.Negative = false
		r.d.Exponent = min(r.d.Exponent, 0)
	}
	return r
}

// String returns the value in plain notation, never with an exponent: "121.44", "1000",
// "0.00000015". The scale of the value is kept, so 30.00 * 10 prints as "300.00".
func (x Decimal) String() string {
	return x.d.Text('f')
}

// Add returns x + y (exact unless the result needs more than Precision digits).
func (x Decimal) Add(y Decimal) Decimal {
	var r Decimal
	_, _ = arith.Add(&r.d, &x.d, &y.d) // see arith: no trap can fire
	return norm(r)
}

// Sub returns x - y (exact unless the result needs more than Precision digits).
func (x Decimal) Sub(y Decimal) Decimal {
	var r Decimal
	_, _ = arith.Sub(&r.d, &x.d, &y.d)
	return norm(r)
}

// Mul returns x * y (exact unless the result needs more than Precision digits).
func (x Decimal) Mul(y Decimal) Decimal {
	var r Decimal
	_, _ = arith.Mul(&r.d, &x.d, &y.d)
	return norm(r)
}

// Div returns x / y rounded to Precision significant digits (half to even). It returns the zero
// Decimal and ErrDivisionByZero when y is zero.
func (x Decimal) Div(y Decimal) (Decimal, error) {
	if y.IsZero() {
		return Decimal{}, ErrDivisionByZero
	}
	var r Decimal
	cond, _ := arith.Quo(&r.d, &x.d, &y.d)
	if !cond.Inexact() {
		// apd pads an exact quotient to 34 digits (6300/100 = 63.000...0). Give it the scale the
		// decimal arithmetic specification calls ideal instead: the dividend's scale minus the
		// divisor's, or fewer zeros when the quotient needs them (1/8 = 0.125).
		ideal := x.d.Exponent - y.d.Exponent
		var reduced apd.Decimal
		reduced.Reduce(&r.d)
		r.d.Set(&reduced)
		if reduced.Exponent > ideal {
			var padded apd.Decimal
			if c, _ := arith.Quantize(&padded, &reduced, ideal); c&apd.InvalidOperation == 0 {
				r.d.Set(&padded)
			}
		}
	}
	return norm(r), nil
}

// Neg returns -x.
func (x Decimal) Neg() Decimal {
	var r Decimal
	r.d.Neg(&x.d)
	return norm(r)
}

// Abs returns |x|.
func (x Decimal) Abs() Decimal {
	var r Decimal
	r.d.Abs(&x.d)
	return r
}

// Cmp returns -1 if x < y, 0 if x == y and +1 if x > y, comparing values (1.5 equals 1.50).
func (x Decimal) Cmp(y Decimal) int {
	return x.d.Cmp(&y.d)
}

// Equal reports whether x and y have the same value.
func (x Decimal) Equal(y Decimal) bool {
	return x.Cmp(y) == 0
}

// Sign returns -1, 0 or +1 as x is negative, zero or positive.
func (x Decimal) Sign() int {
	return x.d.Sign()
}

// IsZero reports whether x is 0 (at any scale: 0.00 is zero). It also lets encoding/json's
// omitzero option drop zero amounts.
func (x Decimal) IsZero() bool {
	return x.d.IsZero()
}

// IsNeg reports whether x is strictly negative.
func (x Decimal) IsNeg() bool {
	return x.d.Sign() < 0
}

// IsInteger reports whether x has no fractional part (2.00 is an integer).
func (x Decimal) IsInteger() bool {
	var frac apd.Decimal
	x.d.Modf(nil, &frac)
	return frac.IsZero()
}

// Ceil returns the smallest integer greater than or equal to x, with no digits after the point.
func (x Decimal) Ceil() Decimal {
	var r Decimal
	_, _ = arith.Ceil(&r.d, &x.d)
	return norm(r)
}

// Floor returns the largest integer less than or equal to x, with no digits after the point.
func (x Decimal) Floor() Decimal {
	var r Decimal
	_, _ = arith.Floor(&r.d, &x.d)
	return norm(r)
}

// Round returns x rounded to places digits after the point, half away from zero (2.345 -> 2.35,
// -2.345 -> -2.35), written with exactly that many digits (Round(2) of 92 is "92.00"). A negative
// places rounds to tens, hundreds...; places beyond ±100 are clamped to ±100.
func (x Decimal) Round(places int) Decimal {
	places = max(-maxRoundPlaces, min(maxRoundPlaces, places))
	// The result has at most (integer digits of x) + places + 1 (carry) digits; Quantize needs a
	// precision at least that large or it answers NaN.
	intDigits := x.d.NumDigits() + int64(x.d.Exponent)
	prec := max(intDigits, 0) + int64(max(places, 0)) + 2
	ctx := apd.Context{
		Precision:   uint32(min(prec, apd.MaxExponent)),
		MaxExponent: apd.MaxExponent,
		MinExponent: apd.MinExponent,
		Traps:       apd.DefaultTraps,
		Rounding:    apd.RoundHalfUp, // apd rounds magnitudes: half up is half away from zero
	}
	var r Decimal
	if _, err := ctx.Quantize(&r.d, &x.d, int32(-places)); err != nil {
		// Unreachable for finite x (the precision above always suffices); keep x rather than
		// return a NaN.
		return x
	}
	return norm(r)
}

// Reduce returns x without trailing zeros after the point (1.100 -> 1.1, 2.00 -> 2); integers
// keep their digits in String (1200 stays "1200").
func (x Decimal) Reduce() Decimal {
	var r Decimal
	r.d.Reduce(&x.d)
	return norm(r)
}

// Max returns the larger of a and b (a when they are equal).
func Max(a, b Decimal) Decimal {
	if b.Cmp(a) > 0 {
		return b
	}
	return a
}

// Min returns the smaller of a and b (a when they are equal).
func Min(a, b Decimal) Decimal {
	if b.Cmp(a) < 0 {
		return b
	}
	return a
}
