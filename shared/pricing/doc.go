// Package pricing is the pure pricing engine: it turns a SKU's rate and a period's quantity into a
// charge (SPEC 8.1), prorates seat fees by days (SPEC 11), carries an amount down the channel
// through the markup factors and splits it into platform revenue and commissions (SPEC 8.3, 12),
// and prices late usage as an adjustment (SPEC 10). It does no I/O and imports no AWS package;
// every value is a money.Decimal, never a float.
//
// Amounts returned here are at full precision (34 significant digits). Rounding to the
// currency's minor unit happens once per invoice line, in Chain.Split or by the caller with
// money.RoundMoney; nothing here rounds an intermediate value.
//
// The rules and the decisions taken where the specification is silent are written down in
// docs/pricing.md.
package pricing
