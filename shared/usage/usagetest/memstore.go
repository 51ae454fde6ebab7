// Package usagetest holds what tests of usage need: an in-memory usage.Store with the same
// contract as the DynamoDB one, and the contract suite (Run) that every Store passes.
package usagetest

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/usage"
)

// MemStore is an in-memory usage.Store for unit tests. Its zero value is ready to use and it is
// safe for concurrent use. It has no crash to recover from: every call is atomic.
type MemStore struct {
	mu      sync.Mutex
	counted map[string]bool // tenant id + "\x00" + record id
	totals  map[usage.AggregateKey]usage.Total
	refs    map[usage.AggregateKey]usage.AggregateRef
	flags   map[string]*usage.Change // tenant id + "\x00" + key
	events  []outbox.Event
	eventID map[string]bool
	// Calls counts Record calls.
	Calls int
}

func (m *MemStore) init() {
	if m.counted == nil {
		m.counted = map[string]bool{}
		m.totals = map[usage.AggregateKey]usage.Total{}
		m.refs = map[usage.AggregateKey]usage.AggregateRef{}
		m.flags = map[string]*usage.Change{}
		m.eventID = map[string]bool{}
	}
}

// Record implements usage.Store.
func (m *MemStore) Record(_ context.Context, b *usage.Batch) ([]usage.EntryResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	m.Calls++
	out := make([]usage.EntryResult, len(b.Entries))
	delta := map[int]usage.Total{}
	for i, e := range b.Entries {
		k := e.TenantID + "\x00" + e.ID
		if m.counted[k] {
			out[i].Status = usage.Duplicate
			continue
		}
		m.counted[k] = true
		out[i].Status = usage.Accepted
		d := delta[e.Aggregate]
		d.Quantity = d.Quantity.Add(e.Quantity)
		d.Seq++
		delta[e.Aggregate] = d
	}
	for ai, d := range delta {
		a := b.Aggregates[ai]
		if a.Closing {
			fk := a.TenantID + "\x00" + a.Key.String()
			f := m.flags[fk]
			if f == nil {
				f = &usage.Change{Key: a.Key, TenantID: a.TenantID, TenantPath: a.TenantPath}
				m.flags[fk] = f
			}
			f.Late = f.Late || a.Late
			f.Version++
			f.UpdatedAt = b.Now
		}
		m.refs[a.Key] = usage.AggregateRef{Key: a.Key, TenantID: a.TenantID, TenantPath: a.TenantPath}
		cur := m.totals[a.Key]
		next := usage.Total{Quantity: cur.Quantity.Add(d.Quantity), Seq: cur.Seq + 1}
		for _, th := range usage.Crossed(a.Thresholds, cur.Quantity, next.Quantity) {
			ev, err := usage.ThresholdEvent(a, th, next.Quantity, b.Now)
			if err != nil {
				return nil, err
			}
			if !m.eventID[ev.ID] {
				m.eventID[ev.ID] = true
				m.events = append(m.events, ev)
			}
		}
		m.totals[a.Key] = next
	}
	return out, nil
}

// Totals implements usage.Store.
func (m *MemStore) Totals(_ context.Context, keys []usage.AggregateKey) (map[usage.AggregateKey]usage.Total, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	out := map[usage.AggregateKey]usage.Total{}
	for _, k := range keys {
		if t, ok := m.totals[k]; ok {
			out[k] = t
		}
	}
	return out, nil
}

// Aggregates implements usage.Store.
func (m *MemStore) Aggregates(_ context.Context, p period.Period, prefix string) ([]usage.AggregateRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	var out []usage.AggregateRef
	for k, r := range m.refs {
		if k.Period == p && strings.HasPrefix(r.TenantPath+k.SubscriptionID+"#"+k.SKU, prefix) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b usage.AggregateRef) int {
		return strings.Compare(a.TenantPath+a.Key.SubscriptionID+"#"+a.Key.SKU, b.TenantPath+b.Key.SubscriptionID+"#"+b.Key.SKU)
	})
	return out, nil
}

// Changes implements usage.Store.
func (m *MemStore) Changes(_ context.Context, tenantID string) ([]usage.Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	var out []usage.Change
	for k, f := range m.flags {
		if strings.HasPrefix(k, tenantID+"\x00") {
			out = append(out, *f)
		}
	}
	slices.SortFunc(out, func(a, b usage.Change) int {
		return strings.Compare(a.Key.Period.String()+a.Key.String(), b.Key.Period.String()+b.Key.String())
	})
	return out, nil
}

// ResolvePending implements usage.Store: nothing is ever pending in memory.
func (m *MemStore) ResolvePending(context.Context, string) (int, error) { return 0, nil }

// AcknowledgeChange implements usage.Store.
func (m *MemStore) AcknowledgeChange(_ context.Context, tenantID string, key usage.AggregateKey, version int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.init()
	fk := tenantID + "\x00" + key.String()
	f := m.flags[fk]
	if f == nil {
		return apperr.NotFoundf("No such usage change.")
	}
	if f.Version != version || len(f.Pending) > 0 {
		return apperr.New(apperr.Conflict, "usage_changed", "The aggregate changed meanwhile; read it again.")
	}
	delete(m.flags, fk)
	return nil
}

// Events returns the outbox events written so far.
func (m *MemStore) Events() []outbox.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

var _ usage.Store = (*MemStore)(nil)
