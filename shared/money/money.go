package money

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrCurrencyMismatch is returned when two amounts in different currencies are combined.
var ErrCurrencyMismatch = errors.New("currency mismatch")

// Money is an amount in a currency. It encodes as {"amount": "121.44", "currency": "EUR"}
// (SPEC 4). A Money on its way out of the system is rounded to its currency's minor unit (see
// Rounded); amounts inside a computation stay at full precision as Decimals.
type Money struct {
	// Amount is the value, written as a decimal string in JSON.
	Amount Decimal `json:"amount"`
	// Currency is the ISO 4217 code, e.g. "EUR".
	Currency string `json:"currency"`
}

// NewMoney returns amount in currency rounded to the currency's minor unit, or an error wrapping
// ErrUnknownCurrency when currency is not in the table.
func NewMoney(amount Decimal, currency string) (Money, error) {
	r, err := RoundMoney(amount, currency)
	if err != nil {
		return Money{}, err
	}
	return Money{Amount: r, Currency: currency}, nil
}

// Rounded returns m with its amount rounded to its currency's minor unit, half away from zero, or
// an error wrapping ErrUnknownCurrency.
func (m Money) Rounded() (Money, error) {
	return NewMoney(m.Amount, m.Currency)
}

// Add returns m + o. It returns an error wrapping ErrCurrencyMismatch when the currencies differ.
func (m Money) Add(o Money) (Money, error) {
	if m.Currency != o.Currency {
		return Money{}, fmt.Errorf("%w: %s and %s", ErrCurrencyMismatch, strconv.Quote(m.Currency), strconv.Quote(o.Currency))
	}
	return Money{Amount: m.Amount.Add(o.Amount), Currency: m.Currency}, nil
}

// Sub returns m - o. It returns an error wrapping ErrCurrencyMismatch when the currencies differ.
func (m Money) Sub(o Money) (Money, error) {
	return m.Add(Money{Amount: o.Amount.Neg(), Currency: o.Currency})
}

// String returns "121.44 EUR".
func (m Money) String() string {
	return m.Amount.String() + " " + m.Currency
}
