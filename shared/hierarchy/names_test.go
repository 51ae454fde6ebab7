package hierarchy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/listing"
)

// countingStore is an in-memory hierarchy.Store that counts its reads. Like the table, it keeps
// no parent names: the service must name parents itself.
type countingStore struct {
	ents                    map[string]*hierarchy.Entity
	gets, batchGets, querys int
	batchIDs                [][]string
}

func (s *countingStore) copyOf(e *hierarchy.Entity) *hierarchy.Entity {
	c := *e
	if e.Parent != nil {
		p := *e.Parent
		p.Name = ""
		c.Parent = &p
	}
	return &c
}

func (s *countingStore) CreateEntity(ctx context.Context, e *hierarchy.Entity) error {
	s.ents[e.ID] = s.copyOf(e)
	return nil
}

func (s *countingStore) GetEntity(ctx context.Context, id string) (*hierarchy.Entity, error) {
	s.gets++
	e, ok := s.ents[id]
	if !ok {
		return nil, apperr.NotFoundf("No entity with this id.")
	}
	return s.copyOf(e), nil
}

func (s *countingStore) GetEntities(ctx context.Context, ids []string) (map[string]*hierarchy.Entity, error) {
	s.batchGets++
	s.batchIDs = append(s.batchIDs, slices.Clone(ids))
	out := map[string]*hierarchy.Entity{}
	for _, id := range ids {
		if e, ok := s.ents[id]; ok {
			out[id] = s.copyOf(e)
		}
	}
	return out, nil
}

func (s *countingStore) UpdateEntity(ctx context.Context, id string, fn func(*hierarchy.Entity) error) (*hierarchy.Entity, error) {
	e, ok := s.ents[id]
	if !ok {
		return nil, apperr.NotFoundf("No entity with this id.")
	}
	next := s.copyOf(e)
	if err := fn(next); err != nil {
		return nil, err
	}
	s.ents[id] = s.copyOf(next)
	return next, nil
}

func (s *countingStore) DeleteEntity(ctx context.Context, id string) error {
	delete(s.ents, id)
	return nil
}

func (s *countingStore) ListSubtree(ctx context.Context, t access.EntityType, prefix string) ([]*hierarchy.Entity, error) {
	s.querys++
	var out []*hierarchy.Entity
	for _, e := range s.ents {
		if e.Type == t && strings.HasPrefix(e.Path, prefix) {
			out = append(out, s.copyOf(e))
		}
	}
	return out, nil
}

var admin = access.Principal{UserID: "usr_admin", Role: access.PlatformAdmin, ScopeID: access.PlatformID,
	ScopeType: access.Platform, ScopePath: access.PlatformPath}

func TestNamesResolvedWhenAnswering(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{ents: map[string]*hierarchy.Entity{
		access.PlatformID: {ID: access.PlatformID, Type: access.Platform, Name: "Vendor", Status: hierarchy.StatusActive, Path: access.PlatformPath},
	}}
	svc := &hierarchy.Service{Store: st, PlatformCurrency: "EUR"}
	d, err := svc.Create(ctx, admin, access.Distributor, hierarchy.CreateInput{Name: "D"})
	if err != nil {
		t.Fatal(err)
	}
	var partners []*hierarchy.Entity
	for _, name := range []string{"P1", "P2", "P3"} {
		p, err := svc.Create(ctx, admin, access.Partner, hierarchy.CreateInput{Name: name, Parent: &hierarchy.ParentInput{Type: access.Distributor, ID: d.ID}})
		if err != nil {
			t.Fatal(err)
		}
		partners = append(partners, p)
		for i := 0; i < 4; i++ {
			if _, err := svc.Create(ctx, admin, access.Tenant, hierarchy.CreateInput{Name: name + " tenant",
				Parent: &hierarchy.ParentInput{Type: access.Partner, ID: p.ID}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rename := func(t *testing.T, typ access.EntityType, id, name string) {
		t.Helper()
		if _, err := svc.Update(ctx, admin, typ, id, hierarchy.UpdateInput{Name: &name}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("OK/ListIsOneQueryAndOneBatchGet", func(t *testing.T) {
		rename(t, access.Partner, partners[1].ID, "P2 renamed")
		*st = countingStore{ents: st.ents}
		page, _, err := svc.List(ctx, admin, access.Tenant, listing.Query{PageSize: 500}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 12 || st.querys != 1 || st.batchGets != 1 || st.gets != 0 {
			t.Fatalf("%d items: %d queries, %d BatchGets, %d Gets", len(page), st.querys, st.batchGets, st.gets)
		}
		if len(st.batchIDs[0]) != 3 {
			t.Errorf("the BatchGet asked for %v, want the 3 distinct parents once each", st.batchIDs[0])
		}
		want := map[string]string{partners[0].ID: "P1", partners[1].ID: "P2 renamed", partners[2].ID: "P3"}
		for _, e := range page {
			if e.Parent.Name != want[e.Parent.ID] {
				t.Errorf("%s: parent %+v, want %q", e.ID, e.Parent, want[e.Parent.ID])
			}
		}
	})
	t.Run("OK/GetIsTwoReads", func(t *testing.T) {
		rename(t, access.Distributor, d.ID, "D renamed")
		*st = countingStore{ents: st.ents}
		got, err := svc.Get(ctx, admin, access.Partner, partners[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Parent.Name != "D renamed" || st.gets != 2 || st.batchGets != 0 || st.querys != 0 {
			t.Fatalf("parent %+v after %d Gets, %d BatchGets, %d queries", got.Parent, st.gets, st.batchGets, st.querys)
		}
	})
	t.Run("OK/EmptyPageReadsNoParent", func(t *testing.T) {
		*st = countingStore{ents: st.ents}
		page, _, err := svc.List(ctx, admin, access.Tenant, listing.Query{Search: "no such tenant"}, nil)
		if err != nil || len(page) != 0 || st.batchGets != 0 {
			t.Fatalf("%v, %d items, %d BatchGets", err, len(page), st.batchGets)
		}
	})
	t.Run("OK/MissingEntityLeavesNameEmpty", func(t *testing.T) {
		refs := []*hierarchy.Ref{{Type: access.Partner, ID: "prt_gone", Name: "stale"}, {Type: access.Distributor, ID: d.ID}, nil}
		if err := hierarchy.NameRefs(ctx, st, refs); err != nil {
			t.Fatal(err)
		}
		if refs[0].Name != "" || refs[1].Name != "D renamed" {
			t.Fatalf("names %q, %q", refs[0].Name, refs[1].Name)
		}
	})
}
