package tablestore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/identity"
	"github.com/channelbilling/cms/shared/outbox"
)

// userItem is a user: PK USER#<id>, SK USER; GSI1 USER / <scope path><id>. It keeps its scope's
// type, id and path, never its name: identity.Users names the scope when it answers.
type userItem struct {
	PK, SK         string
	GSI1PK, GSI1SK string
	Kind           string
	ID             string
	Email          string
	FirstName      string
	LastName       string
	Mobile         string `dynamo:",omitempty"`
	Role           string
	ScopeType      string
	ScopeID        string
	ScopePath      string
	Status         string
	Password       string `dynamo:",omitempty"`
	CreatedAt      time.Time
	UpdatedAt      time.Time
	LastLoginAt    *time.Time `dynamo:",omitempty"`
	Version        int64
}

// emailItem reserves an e-mail address: PK EMAIL#<lower-case email>, SK EMAIL.
type emailItem struct {
	PK, SK string
	Kind   string
	UserID string
}

// inviteItem is a pending invitation: PK INVITE#<hash>, SK INVITE, expiring by TTL.
type inviteItem struct {
	PK, SK    string
	Kind      string
	UserID    string
	ExpiresAt time.Time
	TTL       int64
}

func userPK(id string) string         { return "USER#" + id }
func emailPK(email string) string     { return "EMAIL#" + strings.ToLower(email) }
func invitePK(hash string) string     { return "INVITE#" + hash }
func userGSI(u *identity.User) string { return u.ScopePath + u.ID }

func toUserItem(u *identity.User) userItem {
	return userItem{
		PK: userPK(u.ID), SK: "USER", GSI1PK: "USER", GSI1SK: userGSI(u), Kind: "user",
		ID: u.ID, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, Mobile: u.Mobile,
		Role: string(u.Role), ScopeType: string(u.Scope.Type), ScopeID: u.Scope.ID,
		ScopePath: u.ScopePath, Status: u.Status, Password: u.Password, CreatedAt: u.CreatedAt,
		UpdatedAt: u.UpdatedAt, LastLoginAt: u.LastLoginAt, Version: u.Version,
	}
}

func (it userItem) user() *identity.User {
	return &identity.User{
		ID: it.ID, Email: it.Email, FirstName: it.FirstName, LastName: it.LastName, Mobile: it.Mobile,
		Role: access.Role(it.Role), Scope: hierarchy.Ref{Type: access.EntityType(it.ScopeType), ID: it.ScopeID},
		ScopePath: it.ScopePath, Status: it.Status, Password: it.Password, CreatedAt: it.CreatedAt,
		UpdatedAt: it.UpdatedAt, LastLoginAt: it.LastLoginAt, Version: it.Version,
	}
}

func inviteWrite(t dynamo.Table, inv identity.Invite) *dynamo.Put {
	return t.Put(inviteItem{PK: invitePK(inv.Hash), SK: "INVITE", Kind: "invite", UserID: inv.UserID,
		ExpiresAt: inv.ExpiresAt, TTL: inv.ExpiresAt.Unix()}).If("attribute_not_exists(PK)")
}

func emailTaken() error {
	var f apperr.Fields
	f.Add("email", "taken", "a user with this e-mail already exists")
	ae := apperr.As(f.Err())
	ae.Kind, ae.Code, ae.Message = apperr.Conflict, "email_taken", "A user with this e-mail already exists."
	return ae
}

// CreateUser implements identity.Store.
func (s *Store) CreateUser(ctx context.Context, u *identity.User, inv *identity.Invite, events ...outbox.Event) error {
	u.Version = 1
	tx := s.db.WriteTx().
		Put(s.table.Put(toUserItem(u)).If("attribute_not_exists(PK)")).
		Put(s.table.Put(emailItem{PK: emailPK(u.Email), SK: "EMAIL", Kind: "email", UserID: u.ID}).If("attribute_not_exists(PK)")).
		Update(s.table.Update("PK", entityPK(u.Scope.ID)).Range("SK", entitySK).Add("Users", 1).If("attribute_exists(PK)"))
	if inv != nil {
		tx.Put(inviteWrite(s.table, *inv))
	}
	for _, e := range events {
		tx.Put(eventPut(s.table, e))
	}
	err := tx.Run(ctx)
	failed := failedAt(err)
	switch {
	case err == nil:
		return nil
	case failed[1]:
		return emailTaken()
	case failed[2]:
		return apperr.NotFoundf("The scope entity no longer exists.")
	}
	return apperr.Wrap(err, "create user")
}

// GetUser implements identity.Store.
func (s *Store) GetUser(ctx context.Context, id string) (*identity.User, error) {
	var it userItem
	err := s.table.Get("PK", userPK(id)).Range("SK", dynamo.Equal, "USER").Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No user with this id.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get user")
	}
	return it.user(), nil
}

// GetUserByEmail implements identity.Store.
func (s *Store) GetUserByEmail(ctx context.Context, email string) (*identity.User, error) {
	var it emailItem
	err := s.table.Get("PK", emailPK(email)).Range("SK", dynamo.Equal, "EMAIL").Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No user with this e-mail.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get user by email")
	}
	return s.GetUser(ctx, it.UserID)
}

// UpdateUser implements identity.Store.
func (s *Store) UpdateUser(ctx context.Context, id string, fn func(*identity.User) error) (*identity.User, error) {
	for attempt := 0; attempt < 4; attempt++ {
		cur, err := s.GetUser(ctx, id)
		if err != nil {
			return nil, err
		}
		next := *cur
		if err := fn(&next); err != nil {
			return nil, err
		}
		next.Version = cur.Version + 1
		tx := s.db.WriteTx().Put(s.table.Put(toUserItem(&next)).If("'Version' = ?", cur.Version))
		emailAt, scopeAt := -1, -1
		n := 1
		if !strings.EqualFold(next.Email, cur.Email) {
			tx.Delete(s.table.Delete("PK", emailPK(cur.Email)).Range("SK", "EMAIL"))
			tx.Put(s.table.Put(emailItem{PK: emailPK(next.Email), SK: "EMAIL", Kind: "email", UserID: id}).If("attribute_not_exists(PK)"))
			emailAt = n + 1
			n += 2
		}
		if next.Scope.ID != cur.Scope.ID {
			tx.Update(s.table.Update("PK", entityPK(cur.Scope.ID)).Range("SK", entitySK).Add("Users", -1))
			tx.Update(s.table.Update("PK", entityPK(next.Scope.ID)).Range("SK", entitySK).Add("Users", 1).If("attribute_exists(PK)"))
			scopeAt = n + 1
		}
		err = tx.Run(ctx)
		failed := failedAt(err)
		switch {
		case err == nil:
			return &next, nil
		case failed[emailAt]:
			return nil, emailTaken()
		case failed[scopeAt]:
			return nil, apperr.NotFoundf("The scope entity no longer exists.")
		case failed[0] || isTxConflict(err):
			continue
		}
		return nil, apperr.Wrap(err, "update user")
	}
	return nil, apperr.New(apperr.Conflict, "concurrent_update", "The user is being changed by someone else; retry.")
}

// DeleteUser implements identity.Store.
func (s *Store) DeleteUser(ctx context.Context, id string, check func(*identity.User) error) error {
	u, err := s.GetUser(ctx, id)
	if err != nil {
		return err
	}
	if err := check(u); err != nil {
		return err
	}
	err = s.db.WriteTx().
		Delete(s.table.Delete("PK", userPK(id)).Range("SK", "USER").If("'Version' = ?", u.Version)).
		Delete(s.table.Delete("PK", emailPK(u.Email)).Range("SK", "EMAIL")).
		Update(s.table.Update("PK", entityPK(u.Scope.ID)).Range("SK", entitySK).Add("Users", -1)).
		Run(ctx)
	if failedAt(err)[0] || isTxConflict(err) {
		return apperr.New(apperr.Conflict, "concurrent_update", "The user changed meanwhile; retry.")
	}
	return apperr.Wrap(err, "delete user")
}

// ListUsers implements identity.Store: one query on GSI1 (USER, begins_with path).
func (s *Store) ListUsers(ctx context.Context, prefix string) ([]*identity.User, error) {
	var items []userItem
	err := s.table.Get("GSI1PK", "USER").Index(GSI1).Range("GSI1SK", dynamo.BeginsWith, prefix).All(ctx, &items)
	if err != nil {
		return nil, apperr.Wrap(err, "list users")
	}
	out := make([]*identity.User, 0, len(items))
	for _, it := range items {
		out = append(out, it.user())
	}
	return out, nil
}

// PutInvite implements identity.Store.
func (s *Store) PutInvite(ctx context.Context, inv identity.Invite, events ...outbox.Event) error {
	tx := s.db.WriteTx().Put(inviteWrite(s.table, inv))
	for _, e := range events {
		tx.Put(eventPut(s.table, e))
	}
	return apperr.Wrap(tx.Run(ctx), "put invite")
}

func invalidInvite() error {
	return apperr.New(apperr.Unauthorized, "invalid_invite", "The invitation is unknown, used or expired.")
}

// AcceptInvite implements identity.Store. Only an invited user accepts: once one link has been
// redeemed, the user's other links are refused like spent ones.
func (s *Store) AcceptInvite(ctx context.Context, hash, passwordHash string, now time.Time) (*identity.User, error) {
	var inv inviteItem
	err := s.table.Get("PK", invitePK(hash)).Range("SK", dynamo.Equal, "INVITE").Consistent(true).One(ctx, &inv)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, invalidInvite()
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get invite")
	}
	if !now.Before(inv.ExpiresAt) {
		return nil, invalidInvite()
	}
	u, err := s.GetUser(ctx, inv.UserID)
	if apperr.Is(err, apperr.NotFound) {
		return nil, invalidInvite()
	}
	if err != nil {
		return nil, err
	}
	// A user re-invited holds several links; the first one redeemed ends the invitation. Another
	// link (it travels in user.invited) must not reset the password of the active account. The
	// version condition below keeps this true until the write.
	if u.Status != identity.UserInvited {
		return nil, invalidInvite()
	}
	u.Password, u.Status, u.UpdatedAt = passwordHash, identity.UserActive, now
	u.Version++
	err = s.db.WriteTx().
		Delete(s.table.Delete("PK", invitePK(hash)).Range("SK", "INVITE").If("attribute_exists(PK)")).
		Put(s.table.Put(toUserItem(u)).If("'Version' = ?", u.Version-1)).
		Run(ctx)
	if dynamo.IsCondCheckFailed(err) || isTxConflict(err) {
		return nil, invalidInvite()
	}
	if err != nil {
		return nil, apperr.Wrap(err, "accept invite")
	}
	return u, nil
}
