package money_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/channelbilling/cms/shared/money"
)

func TestCurrencies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		code  string
		minor int
	}{
		{"OK/EUR", "EUR", 2},
		{"OK/USD", "USD", 2},
		{"OK/GBP", "GBP", 2},
		{"OK/CHF", "CHF", 2},
		{"OK/JPY", "JPY", 0},
		{"OK/SEK", "SEK", 2},
		{"OK/NOK", "NOK", 2},
		{"OK/DKK", "DKK", 2},
		{"OK/PLN", "PLN", 2},
		{"OK/CZK", "CZK", 2},
		{"OK/AUD", "AUD", 2},
		{"OK/CAD", "CAD", 2},
		{"OK/NZD", "NZD", 2},
		{"OK/BRL", "BRL", 2},
		{"OK/INR", "INR", 2},
		{"OK/ZAR", "ZAR", 2},
		{"OK/KRW", "KRW", 0},
		{"OK/ISK", "ISK", 0},
		{"OK/KWD", "KWD", 3},
		{"OK/BHD", "BHD", 3},
		{"OK/TND", "TND", 3},
		{"ErrLowerCase", "eur", -1},
		{"ErrUnknown", "XYZ", -1},
		{"ErrEmpty", "", -1},
		{"ErrWithdrawn", "HRK", -1},
		{"ErrFundCode", "CLF", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := money.ValidCurrency(tc.code); got != (tc.minor >= 0) {
				t.Fatalf("ValidCurrency(%q) = %v", tc.code, got)
			}
			if got := money.MinorUnits(tc.code); got != tc.minor {
				t.Fatalf("MinorUnits(%q) = %d, want %d", tc.code, got, tc.minor)
			}
		})
	}
	all := money.Currencies()
	if len(all) < 140 {
		t.Fatalf("only %d currencies", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("Currencies() not sorted at %d: %s, %s", i, all[i-1], all[i])
		}
	}
}

func TestRoundMoney(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		currency string
		want     string
	}{
		{"OK/EUR", "268.2580645161290322", "EUR", "268.26"},
		{"OK/EUR pads", "92", "EUR", "92.00"},
		{"OK/EUR half away from zero", "0.125", "EUR", "0.13"},
		{"OK/EUR negative half", "-0.125", "EUR", "-0.13"},
		{"OK/JPY", "1234.5", "JPY", "1235"},
		{"OK/JPY below half", "1234.49", "JPY", "1234"},
		{"OK/KWD", "1.23456", "KWD", "1.235"},
		{"OK/BHD half", "0.0005", "BHD", "0.001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := money.RoundMoney(MustParse(t, tc.in), tc.currency)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want {
				t.Fatalf("RoundMoney(%s, %s) = %s, want %s", tc.in, tc.currency, got, tc.want)
			}
		})
	}
	t.Run("ErrUnknownCurrency", func(t *testing.T) {
		if _, err := money.RoundMoney(money.NewFromInt(1), "EURO"); !errors.Is(err, money.ErrUnknownCurrency) {
			t.Fatalf("err = %v, want ErrUnknownCurrency", err)
		}
	})
}

func TestMoneyJSON(t *testing.T) {
	m, err := money.NewMoney(MustParse(t, "121.4400001"), "EUR")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"amount":"121.44","currency":"EUR"}`; string(b) != want {
		t.Fatalf("Marshal = %s, want %s", b, want)
	}
	var back money.Money
	if err := json.Unmarshal([]byte(`{"amount": 121.44, "currency": "EUR"}`), &back); err != nil {
		t.Fatal(err)
	}
	if !back.Amount.Equal(m.Amount) || back.Currency != "EUR" {
		t.Fatalf("Unmarshal = %v", back)
	}
	if got := back.String(); got != "121.44 EUR" {
		t.Fatalf("String() = %q", got)
	}
}

func TestMoneyArithmetic(t *testing.T) {
	a := money.Money{Amount: MustParse(t, "203.23"), Currency: "EUR"}
	b := money.Money{Amount: MustParse(t, "92.00"), Currency: "EUR"}
	t.Run("OK/Add", func(t *testing.T) {
		sum, err := a.Add(b)
		if err != nil || sum.Amount.String() != "295.23" || sum.Currency != "EUR" {
			t.Fatalf("Add = %v, %v", sum, err)
		}
	})
	t.Run("OK/Sub", func(t *testing.T) {
		diff, err := a.Sub(b)
		if err != nil || diff.Amount.String() != "111.23" {
			t.Fatalf("Sub = %v, %v", diff, err)
		}
	})
	t.Run("OK/Rounded", func(t *testing.T) {
		r, err := money.Money{Amount: MustParse(t, "1.005"), Currency: "USD"}.Rounded()
		if err != nil || r.Amount.String() != "1.01" {
			t.Fatalf("Rounded = %v, %v", r, err)
		}
	})
	t.Run("ErrCurrencyMismatch", func(t *testing.T) {
		if _, err := a.Add(money.Money{Amount: money.NewFromInt(1), Currency: "USD"}); !errors.Is(err, money.ErrCurrencyMismatch) {
			t.Fatalf("err = %v, want ErrCurrencyMismatch", err)
		}
	})
	t.Run("ErrUnknownCurrency", func(t *testing.T) {
		if _, err := money.NewMoney(money.NewFromInt(1), "eur"); !errors.Is(err, money.ErrUnknownCurrency) {
			t.Fatalf("err = %v, want ErrUnknownCurrency", err)
		}
	})
}
