package billing_test

import (
	"context"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/catalog"
)

// racingSeqWorld is a world in which, at the first read of the issuer's counter, another worker
// (the same service, a later clock) issues an invoice of the issuer before the read's answer
// arrives: the first worker then loses the number and takes the next one.
type racingSeqWorld struct {
	*world
	now   *time.Time
	other func()
	raced bool
}

func (w *racingSeqWorld) LastSeq(ctx context.Context, issuerID string, year int) (int64, error) {
	last, err := w.world.LastSeq(ctx, issuerID, year)
	if !w.raced {
		w.raced = true
		*w.now = w.now.Add(time.Second)
		w.other()
		*w.now = w.now.Add(time.Second)
	}
	return last, err
}

// Invoice numbers of one issuer are in the order of their issue dates, also when a worker loses
// the number to a faster one: tenant B's worker reads the counter first, tenant A's issues
// number 1 meanwhile, and B takes number 2, dated after A's.
func TestInvoiceNumbersFollowIssueDates(t *testing.T) {
	base := newWorld()
	p := base.addEntity("prt_p", access.Partner, nil, markups("20"))
	p.BillingID = "PB"
	tenants := map[string]string{}
	base.plans["pln_basic"] = &catalog.Plan{ID: "pln_basic", Code: "basic", Currency: "EUR", BasePrice: dec(t, "10.00")}
	for _, id := range []string{"tnt_a", "tnt_b"} {
		tn := base.addEntity(id, access.Tenant, p, nil)
		tn.Currency = "EUR"
		base.subscribe("sub_"+id, tn, "pln_basic", dec(t, "1"), oct(1, 0), oct(1, 0))
		tenants[id] = tn.ID
	}
	now := october.End().Add(5 * time.Minute)
	w := &racingSeqWorld{world: base, now: &now}
	s := base.service(&now)
	s.Store = w
	var a *billing.Invoice
	w.other = func() { a, _ = base.bill(t, s, october, tenants["tnt_a"]) }
	b, fail := base.bill(t, s, october, tenants["tnt_b"])
	if fail != nil || a == nil || b == nil {
		t.Fatalf("invoices %+v %+v, failure %+v", a, b, fail)
	}
	if a.Number != "PB-2026-000001" || b.Number != "PB-2026-000002" {
		t.Fatalf("numbers %s (A) and %s (B), want A first: B lost the number to A", a.Number, b.Number)
	}
	if !b.IssuedAt.After(a.IssuedAt) {
		t.Fatalf("invoice %s issued %s, before %s issued %s", b.Number, b.IssuedAt, a.Number, a.IssuedAt)
	}
}
