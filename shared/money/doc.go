// Package money holds the exact decimal type every amount, price and quantity in the platform is
// computed with, the Money value the API exchanges ({"amount": "121.44", "currency": "EUR"}), and
// the ISO 4217 currency table that says how many minor units each currency rounds to.
//
// # Why apd
//
// Decimal wraps github.com/cockroachdb/apd/v3. We need decimal (not binary) arithmetic so that
// 0.10 + 0.20 is 0.30 and a price typed by a person is the price computed with; we need arbitrary
// precision so that proration fractions such as 21/31 and chains of markup factors keep all their
// digits until the one rounding the specification allows (SPEC 11); and we need explicit contexts so
// that the precision and the rounding mode of every operation are stated in one place instead of
// being a library default. apd gives all three, implements the General Decimal Arithmetic
// specification (the model behind IEEE 754 decimal128), has no dependencies beyond the standard
// library, and is the arithmetic of CockroachDB's DECIMAL type, which makes it well exercised.
// Alternatives were ruled out: float64 is binary and inexact; shopspring/decimal rounds division to
// a package-global number of places; math/big.Rat is exact but cannot be printed as a finite
// decimal for fractions such as 1/3 and has no decimal rounding modes.
//
// # Precision and rounding
//
// Add, Sub, Mul and Div work in a fixed context of 34 significant digits (the precision of IEEE 754
// decimal128), rounding half to even at the 34th digit. Values the platform handles (amounts up to
// billions with a few decimals, quantities with up to a dozen decimals) have far fewer digits, so
// sums, differences and products are exact, and a quotient such as 6300/31 keeps 31 digits after
// the point, which is enough that rounding it to cents afterwards cannot be affected. Rounding to a
// number of places (Round, RoundMoney) is half away from zero, as SPEC 11 requires for invoice
// lines.
//
// No value ever passes through float64: text and JSON are parsed digit by digit, including JSON
// numbers, which are read from their raw text.
package money
