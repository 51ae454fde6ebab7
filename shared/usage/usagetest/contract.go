package usagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/usage"
)

// Harness is one Store under test and a way to read the outbox events it wrote.
type Harness struct {
	Store usage.Store
	// Events returns every outbox event of type typ written so far.
	Events func(tb testing.TB, typ string) []outbox.Event
}

// MustDecimal parses s or fails the test.
func MustDecimal(tb testing.TB, s string) money.Decimal {
	tb.Helper()
	d, err := money.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// scenario builds batches for one fresh tenant and its subscriptions (unique ids, so that the
// subtests of a shared table never meet).
type scenario struct {
	tb     testing.TB
	tenant string
	path   string
	now    time.Time
	per    period.Period
}

func newScenario(tb testing.TB) *scenario {
	t := ids.New("tnt")
	now := time.Now().UTC()
	return &scenario{tb: tb, tenant: t, path: "/platform/" + ids.New("prt") + "/" + t + "/", now: now, per: period.Of(now)}
}

func (s *scenario) key(sub, sku string) usage.AggregateKey {
	return usage.AggregateKey{SubscriptionID: sub, SKU: sku, Period: s.per}
}

// batch returns a batch of n records "<prefix>-<i>" of quantity q over the given subscriptions
// (round robin) of SKU sku.
func (s *scenario) batch(prefix string, n int, q string, sku string, subs []string, thresholds ...string) *usage.Batch {
	b := &usage.Batch{Source: usage.SourceAPI, Now: s.now}
	idx := map[string]int{}
	var th []money.Decimal
	for _, t := range thresholds {
		th = append(th, MustDecimal(s.tb, t))
	}
	for i := range n {
		sub := subs[i%len(subs)]
		ai, ok := idx[sub]
		if !ok {
			ai = len(b.Aggregates)
			idx[sub] = ai
			b.Aggregates = append(b.Aggregates, usage.Aggregate{Key: s.key(sub, sku), TenantID: s.tenant, TenantPath: s.path, Thresholds: th})
		}
		b.Entries = append(b.Entries, usage.Entry{Aggregate: ai, Record: usage.Record{
			ID: fmt.Sprintf("%s-%d", prefix, i), TenantID: s.tenant, SubscriptionID: sub, SKU: sku,
			Quantity: MustDecimal(s.tb, q), Timestamp: s.now, Source: usage.SourceAPI}})
	}
	return b
}

func record(tb testing.TB, st usage.Store, b *usage.Batch) map[usage.Status]int {
	tb.Helper()
	res, err := st.Record(context.Background(), b)
	if err != nil {
		tb.Fatalf("Record: %v", err)
	}
	if len(res) != len(b.Entries) {
		tb.Fatalf("Record answered %d results for %d entries", len(res), len(b.Entries))
	}
	out := map[usage.Status]int{}
	for _, r := range res {
		out[r.Status]++
		if r.Status == usage.Retry {
			tb.Errorf("unexpected Retry: %v", r.Err)
		}
	}
	return out
}

func wantTotal(tb testing.TB, st usage.Store, k usage.AggregateKey, want string) usage.Total {
	tb.Helper()
	got, err := st.Totals(context.Background(), []usage.AggregateKey{k})
	if err != nil {
		tb.Fatal(err)
	}
	if !got[k].Quantity.Equal(MustDecimal(tb, want)) {
		tb.Fatalf("total of %s = %s, want %s", k, got[k].Quantity, want)
	}
	return got[k]
}

// Run runs the usage.Store contract against the stores newHarness returns (one per subtest).
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("OK", func(t *testing.T) {
		h := newHarness(t)
		s := newScenario(t)
		subs := []string{ids.New("sub"), ids.New("sub")}
		got := record(t, h.Store, s.batch("r", 10, "1.5", "gb", subs))
		if got[usage.Accepted] != 10 {
			t.Fatalf("statuses %v, want 10 accepted", got)
		}
		tot := wantTotal(t, h.Store, s.key(subs[0], "gb"), "7.5")
		if tot.Seq < 1 {
			t.Errorf("seq %d after one increment", tot.Seq)
		}
		wantTotal(t, h.Store, s.key(subs[1], "gb"), "7.5")
		refs, err := h.Store.Aggregates(context.Background(), s.per, s.path)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != 2 || refs[0].TenantID != s.tenant || refs[0].TenantPath != s.path {
			t.Fatalf("aggregates %+v", refs)
		}
		if one, _ := h.Store.Aggregates(context.Background(), s.per, s.path+subs[1]+"#"); len(one) != 1 || one[0].Key.SubscriptionID != subs[1] {
			t.Errorf("the prefix of one subscription lists %+v", one)
		}
		if other, _ := h.Store.Aggregates(context.Background(), s.per, s.path+"x"); len(other) != 0 {
			t.Errorf("a prefix outside the tenant lists %v", other)
		}
		if prev, _ := h.Store.Aggregates(context.Background(), s.per.Prev(), s.path); len(prev) != 0 {
			t.Errorf("another period lists %v", prev)
		}
	})
	t.Run("ExactDecimals", func(t *testing.T) {
		h := newHarness(t)
		s := newScenario(t)
		sub := ids.New("sub")
		for i := range 10 {
			record(t, h.Store, s.batch(fmt.Sprintf("b%d", i), 1, "0.1", "gb", []string{sub}))
		}
		wantTotal(t, h.Store, s.key(sub, "gb"), "1.0")
	})
	t.Run("DuplicatesWithinABatch", func(t *testing.T) {
		h := newHarness(t)
		s := newScenario(t)
		sub := ids.New("sub")
		b := s.batch("r", 3, "2", "gb", []string{sub})
		b.Entries = append(b.Entries, b.Entries...)
		got := record(t, h.Store, b)
		if got[usage.Accepted] != 3 || got[usage.Duplicate] != 3 {
			t.Fatalf("statuses %v, want 3 accepted and 3 duplicates", got)
		}
		wantTotal(t, h.Store, s.key(sub, "gb"), "6")
	})
	t.Run("Redelivered", func(t *testing.T) {
		h := newHarness(t)
		s := newScenario(t)
		subs := []string{ids.New("sub"), ids.New("sub"), ids.New("sub")}
		record(t, h.Store, s.batch("r", 30, "1", "gb", subs))
		for _, redelivery := range []bool{false, true} {
			b := s.batch("r", 30, "1", "gb", subs)
			b.Redelivery = redelivery
			b.Source = usage.SourceQueue
			if got := record(t, h.Store, b); got[usage.Duplicate] != 30 {
				t.Fatalf("redelivery=%v: statuses %v, want 30 duplicates", redelivery, got)
			}
		}
		// Half new, half seen.
		b := s.batch("r", 60, "1", "gb", subs)
		if got := record(t, h.Store, b); got[usage.Duplicate] != 30 || got[usage.Accepted] != 30 {
			t.Fatalf("statuses %v, want 30 and 30", got)
		}
		for _, sub := range subs {
			wantTotal(t, h.Store, s.key(sub, "gb"), "20")
		}
	})
	t.Run("SameIDOtherTenant", func(t *testing.T) {
		h := newHarness(t)
		a, b := newScenario(t), newScenario(t)
		sub := ids.New("sub")
		record(t, h.Store, a.batch("r", 2, "1", "gb", []string{sub}))
		if got := record(t, h.Store, b.batch("r", 2, "1", "gb", []string{sub + "b"})); got[usage.Accepted] != 2 {
			t.Fatalf("the same ids under another tenant: %v, want accepted", got)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		h := newHarness(t)
		s := newScenario(t)
		subs := []string{ids.New("sub"), ids.New("sub")}
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := map[usage.Status]int{}
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Workers send overlapping windows of the same 40 records.
				b := s.batch("r", 40, "1", "gb", subs)
				b.Entries = b.Entries[(w%2)*10 : 30+(w%2)*10]
				res, err := h.Store.Record(context.Background(), b)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("Record: %v", err)
					return
				}
				for _, r := range res {
					total[r.Status]++
				}
			}()
		}
		wg.Wait()
		// Whatever was not counted must have been told to come again; deliver it until it is.
		for i := 0; total[usage.Retry] > 0 && i < 20; i++ {
			time.Sleep(100 * time.Millisecond)
			total[usage.Retry] = 0
			res, err := h.Store.Record(context.Background(), s.batch("r", 40, "1", "gb", subs))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				total[r.Status]++
			}
		}
		wantTotal(t, h.Store, s.key(subs[0], "gb"), "20")
		wantTotal(t, h.Store, s.key(subs[1], "gb"), "20")
		if total[usage.Accepted] != 40 {
			t.Fatalf("accepted %d times in all, want 40 (%v)", total[usage.Accepted], total)
		}
	})
	t.Run("ThresholdsOnce", func(t *testing.T) {
		h := newHarness(t)
		s := newScenario(t)
		sub := ids.New("sub")
		mine := func() []outbox.Event {
			var out []outbox.Event
			for _, e := range h.Events(t, outbox.UsageThresholdReached) {
				if e.Path == s.path {
					out = append(out, e)
				}
			}
			return out
		}
		record(t, h.Store, s.batch("a", 4, "2.5", "gb", []string{sub}, "10", "25", "30")) // 10: crosses 10
		if n := len(mine()); n != 1 {
			t.Fatalf("%d events after reaching 10, want 1", n)
		}
		record(t, h.Store, s.batch("a", 4, "2.5", "gb", []string{sub}, "10", "25", "30")) // redelivered
		record(t, h.Store, s.batch("b", 7, "2.5", "gb", []string{sub}, "10", "25", "30")) // 27.5: crosses 25
		record(t, h.Store, s.batch("c", 1, "5", "gb", []string{sub}, "10", "25", "30"))   // 32.5: crosses 30
		record(t, h.Store, s.batch("d", 1, "5", "gb", []string{sub}, "10", "25", "30"))   // nothing
		evs := mine()
		if len(evs) != 3 {
			t.Fatalf("%d events, want 3 (10, 25, 30)", len(evs))
		}
		seen := map[string]bool{}
		for _, e := range evs {
			if seen[e.ID] {
				t.Errorf("event %s twice", e.ID)
			}
			seen[e.ID] = true
		}
		for _, th := range []string{"10", "25", "30"} {
			if !seen[usage.ThresholdEventID(s.key(sub, "gb"), MustDecimal(t, th))] {
				t.Errorf("no event for threshold %s", th)
			}
		}
	})
	t.Run("LateFlags", func(t *testing.T) {
		h := newHarness(t)
		s := newScenario(t)
		s.per = s.per.Prev()
		s.now = s.per.Start().Add(24 * time.Hour)
		sub := ids.New("sub")
		b := s.batch("r", 3, "1", "gb", []string{sub})
		b.Aggregates[0].Late, b.Aggregates[0].Closing = true, true
		b.Now = time.Now().UTC()
		record(t, h.Store, b)
		ctx := context.Background()
		ch, err := h.Store.Changes(ctx, s.tenant)
		if err != nil {
			t.Fatal(err)
		}
		if len(ch) != 1 || !ch[0].Late || ch[0].Key != s.key(sub, "gb") || len(ch[0].Pending) != 0 || ch[0].TenantPath != s.path {
			t.Fatalf("changes %+v", ch)
		}
		if n, err := h.Store.ResolvePending(ctx, s.tenant); err != nil || n != 0 {
			t.Fatalf("ResolvePending = %d, %v", n, err)
		}
		// A stale version is refused; the current one removes the flag.
		err = h.Store.AcknowledgeChange(ctx, s.tenant, ch[0].Key, ch[0].Version-1)
		if !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("acknowledge at a stale version: %v, want Conflict", err)
		}
		if err := h.Store.AcknowledgeChange(ctx, s.tenant, ch[0].Key, ch[0].Version); err != nil {
			t.Fatal(err)
		}
		if ch, _ := h.Store.Changes(ctx, s.tenant); len(ch) != 0 {
			t.Fatalf("changes after acknowledging: %+v", ch)
		}
		// Another late record flags it again.
		record(t, h.Store, func() *usage.Batch {
			b := s.batch("late2", 1, "1", "gb", []string{sub})
			b.Aggregates[0].Late, b.Aggregates[0].Closing = true, true
			return b
		}())
		if ch, _ := h.Store.Changes(ctx, s.tenant); len(ch) != 1 {
			t.Fatalf("changes after a new late record: %+v", ch)
		}
		wantTotal(t, h.Store, s.key(sub, "gb"), "4")
		// Usage of an open period is not flagged.
		o := newScenario(t)
		record(t, h.Store, o.batch("r", 2, "1", "gb", []string{ids.New("sub")}))
		if ch, _ := h.Store.Changes(ctx, o.tenant); len(ch) != 0 {
			t.Fatalf("an open period flagged: %+v", ch)
		}
	})
}
