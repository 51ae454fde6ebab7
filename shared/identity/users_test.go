package identity_test

import (
	"context"
	"testing"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/identity"
)

// movingStore is a user store whose user moves to another partner between the service's lookup
// (GetUser) and its write: what happens when a platform admin reassigns the user meanwhile. Only
// the methods the tests call are implemented; the embedded interface is nil.
type movingStore struct {
	identity.Store
	before, after identity.User
	reads         int
	updated       *identity.User
	deleted       bool
}

func (m *movingStore) current() identity.User {
	if m.reads == 0 {
		return m.before
	}
	return m.after
}

func (m *movingStore) GetUser(_ context.Context, _ string) (*identity.User, error) {
	u := m.current()
	m.reads++
	return &u, nil
}

func (m *movingStore) UpdateUser(_ context.Context, _ string, fn func(*identity.User) error) (*identity.User, error) {
	u := m.current()
	m.reads++
	if err := fn(&u); err != nil {
		return nil, err
	}
	m.updated = &u
	return &u, nil
}

func (m *movingStore) DeleteUser(_ context.Context, _ string, check func(*identity.User) error) error {
	u := m.current()
	m.reads++
	if err := check(&u); err != nil {
		return err
	}
	m.deleted = true
	return nil
}

// oneEntity is an entity store holding the partners of the test.
type oneEntity struct {
	hierarchy.Store
	ents map[string]*hierarchy.Entity
}

func (o oneEntity) GetEntity(_ context.Context, id string) (*hierarchy.Entity, error) {
	if e, ok := o.ents[id]; ok {
		return e, nil
	}
	return nil, apperr.NotFoundf("No entity with this id.")
}

func (o oneEntity) GetEntities(_ context.Context, ids []string) (map[string]*hierarchy.Entity, error) {
	out := map[string]*hierarchy.Entity{}
	for _, id := range ids {
		if e, ok := o.ents[id]; ok {
			out[id] = e
		}
	}
	return out, nil
}

// A partner admin acts on a user of its partner that a platform admin moves to another partner
// meanwhile: the change must not reach the user in its new scope (neither move it back, nor edit
// or delete it there). The check is made on the user as written, not as first read.
func TestUsersActOnlyInScopeAtTheWrite(t *testing.T) {
	p1 := &hierarchy.Entity{ID: "p1", Type: access.Partner, Path: "/platform/p1/", Status: hierarchy.StatusActive}
	p2 := &hierarchy.Entity{ID: "p2", Type: access.Partner, Path: "/platform/p2/", Status: hierarchy.StatusActive}
	ents := oneEntity{ents: map[string]*hierarchy.Entity{"p1": p1, "p2": p2}}
	user := func(e *hierarchy.Entity) identity.User {
		return identity.User{ID: "usr_u", Email: "u@example.test", FirstName: "U", LastName: "Ser", Role: access.PartnerViewer,
			Scope: hierarchy.Ref{Type: e.Type, ID: e.ID}, ScopePath: e.Path, Status: identity.UserActive, Version: 1}
	}
	caller := access.Principal{UserID: "usr_admin1", Role: access.PartnerAdmin, ScopeID: "p1", ScopeType: access.Partner, ScopePath: p1.Path}
	name := "Renamed"
	cases := map[string]func(s *identity.Users) error{
		"ErrAssignRole": func(s *identity.Users) error {
			_, err := s.AssignRole(t.Context(), caller, "usr_u", identity.AssignRoleInput{Role: access.PartnerAdmin})
			return err
		},
		"ErrUpdate": func(s *identity.Users) error {
			_, err := s.Update(t.Context(), caller, "usr_u", identity.UpdateUserInput{FirstName: &name})
			return err
		},
		"ErrDelete": func(s *identity.Users) error { return s.Delete(t.Context(), caller, "usr_u") },
	}
	for n, act := range cases {
		t.Run(n, func(t *testing.T) {
			st := &movingStore{before: user(p1), after: user(p2)}
			err := act(&identity.Users{Store: st, Entities: ents})
			if !apperr.Is(err, apperr.NotFound) {
				t.Errorf("got %v, want NotFound: the user is no longer in the caller's subtree", err)
			}
			if st.updated != nil || st.deleted {
				t.Fatalf("the user in another partner was changed: %+v, deleted %v", st.updated, st.deleted)
			}
		})
	}
}
