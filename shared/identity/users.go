package identity

import (
	"context"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/outbox"
)

// InviteTTL is how long an invitation link stays valid (SPEC 6).
const InviteTTL = 72 * time.Hour

// Users manages users and their roles for a caller. Every method checks the permission first
// (Forbidden), then the caller's subtree (NotFound), then that the caller does not act on a role
// above its own (Forbidden).
type Users struct {
	Store    Store
	Entities hierarchy.Store
	Now      func() time.Time
}

func (s *Users) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Users) lookup(ctx context.Context, p access.Principal, id string) (*User, error) {
	u, err := s.Store.GetUser(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(u.ScopePath)) {
		return nil, apperr.NotFoundf("No user with this id.")
	}
	return u, err
}

// CreateUserInput is the body of POST /users.
type CreateUserInput struct {
	Email     string      `json:"email"`
	FirstName string      `json:"firstName"`
	LastName  string      `json:"lastName"`
	Mobile    string      `json:"mobile,omitempty"`
	Role      access.Role `json:"role"`
	ScopeID   string      `json:"scopeId"`
	Password  string      `json:"password,omitempty"`
}

// Validate reports every bad field at once.
func (in *CreateUserInput) Validate() error {
	var f apperr.Fields
	in.Email = strings.ToLower(strings.TrimSpace(in.Email))
	f.Required("email", in.Email == "")
	if in.Email != "" && !hierarchy.ValidEmail(in.Email) {
		f.Add("email", "invalid", "email must be an e-mail address")
	}
	f.Required("firstName", strings.TrimSpace(in.FirstName) == "")
	f.Required("lastName", strings.TrimSpace(in.LastName) == "")
	for name, v := range map[string]string{"firstName": in.FirstName, "lastName": in.LastName, "mobile": in.Mobile} {
		if len(v) > 100 {
			f.Add(name, "too_long", name+" must be at most 100 characters")
		}
	}
	f.Required("scopeId", in.ScopeID == "")
	if in.Role == "" {
		f.Required("role", true)
	} else if _, ok := access.Lookup(in.Role); !ok {
		f.Add("role", "invalid", "unknown role; GET /api/v1/roles lists them")
	}
	if in.Password != "" {
		if err := auth.ValidatePasswordStrength(in.Password); err != nil {
			f.Add("password", "weak", err.Error())
		}
	}
	return f.Err()
}

// scopeFor resolves a scope entity for a role: it must lie in the caller's subtree and take the
// role. Forbidden "role_above_caller" first when the caller cannot grant the role at any level
// (a partner admin asking for distributor_admin), then Unprocessable naming the field for a scope
// outside the subtree or of the wrong type, then Forbidden "role_above_caller" when the role
// would grant more at that scope than the caller holds.
func (s *Users) scopeFor(ctx context.Context, p access.Principal, role access.Role, scopeID string) (*hierarchy.Entity, error) {
	if !p.CanGrantSomewhere(role) {
		return nil, apperr.New(apperr.Forbidden, "role_above_caller", "You cannot grant a role above your own.")
	}
	var f apperr.Fields
	e, err := s.Entities.GetEntity(ctx, scopeID)
	if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(e.Path)) {
		f.Add("scopeId", "not_found", "no such entity in your scope")
		return nil, f.Unprocessable()
	}
	if err != nil {
		return nil, err
	}
	if !role.AllowedAt(e.Type) {
		f.Add("role", "invalid_for_scope", string(role)+" cannot be held at a "+string(e.Type))
		return nil, f.Unprocessable()
	}
	if !p.CanGrant(role, e.Type) {
		return nil, apperr.New(apperr.Forbidden, "role_above_caller", "You cannot grant a role with permissions you do not hold.")
	}
	return e, nil
}

// Create makes a user. With a password the user is active at once; without, it is invited and a
// user.invited event carries the one-time link token. Forbidden, Invalid, Unprocessable, Conflict.
func (s *Users) Create(ctx context.Context, p access.Principal, in CreateUserInput) (*User, error) {
	if err := p.Require(access.UsersCreate); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	scope, err := s.scopeFor(ctx, p, in.Role, in.ScopeID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	u := &User{
		ID: ids.New("usr"), Email: in.Email, FirstName: strings.TrimSpace(in.FirstName), LastName: strings.TrimSpace(in.LastName),
		Mobile: in.Mobile, Role: in.Role, Scope: hierarchy.Ref{Type: scope.Type, ID: scope.ID, Name: scope.Name},
		ScopePath: scope.Path, Status: UserActive, CreatedAt: now, UpdatedAt: now,
	}
	if in.Password != "" {
		if u.Password, err = auth.HashPassword(in.Password); err != nil {
			return nil, apperr.Wrap(err, "hash password")
		}
		return u, s.Store.CreateUser(ctx, u, nil)
	}
	u.Status = UserInvited
	inv, ev, err := s.invite(u, now)
	if err != nil {
		return nil, err
	}
	return u, s.Store.CreateUser(ctx, u, inv, ev)
}

// InvitedDetail is the detail of a user.invited event: the link token is in it, since no mail
// server is part of the system; a webhook subscriber delivers it.
type InvitedDetail struct {
	UserID      string    `json:"userId"`
	Email       string    `json:"email"`
	FirstName   string    `json:"firstName"`
	InviteToken string    `json:"inviteToken"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

func (s *Users) invite(u *User, now time.Time) (*Invite, outbox.Event, error) {
	plain, hash, err := auth.NewOpaqueToken("inv")
	if err != nil {
		return nil, outbox.Event{}, apperr.Wrap(err, "invite token")
	}
	inv := &Invite{Hash: hash, UserID: u.ID, ExpiresAt: now.Add(InviteTTL)}
	ev, err := outbox.New(outbox.UserInvited, u.ScopePath, now,
		InvitedDetail{UserID: u.ID, Email: u.Email, FirstName: u.FirstName, InviteToken: plain, ExpiresAt: inv.ExpiresAt})
	if err != nil {
		return nil, outbox.Event{}, apperr.Wrap(err, "invite event")
	}
	return inv, ev, nil
}

// named returns a function that passes on a user with its scope's current name (the store
// keeps the scope's type, id and path, never its name, which a rename would leave stale), or the
// error it was given, or the store's.
func (s *Users) named(ctx context.Context) func(*User, error) (*User, error) {
	return func(u *User, err error) (*User, error) {
		if err != nil {
			return nil, err
		}
		if err := hierarchy.NameRef(ctx, s.Entities, &u.Scope); err != nil {
			return nil, err
		}
		return u, nil
	}
}

// Get returns a user in the caller's subtree, its scope named as it is now. Forbidden, NotFound.
func (s *Users) Get(ctx context.Context, p access.Principal, id string) (*User, error) {
	if err := p.Require(access.UsersRead); err != nil {
		return nil, err
	}
	return s.named(ctx)(s.lookup(ctx, p, id))
}

// UserFields are the searchable and sortable fields of users.
var UserFields = listing.Fields[*User]{
	ID: func(u *User) string { return u.ID },
	Searchable: map[string]func(*User) string{
		"email":     func(u *User) string { return u.Email },
		"firstName": func(u *User) string { return u.FirstName },
		"lastName":  func(u *User) string { return u.LastName },
		"role":      func(u *User) string { return string(u.Role) },
		"status":    func(u *User) string { return u.Status },
		"createdAt": func(u *User) string { return u.CreatedAt.Format(listing.TimeLayout) },
	},
	DefaultSort: "createdAt",
}

// List returns a page of the users in the caller's subtree, their scopes named as they are now
// (one query, then one BatchGet of the page's distinct scopes); filters "scopeId" (that entity's
// subtree) and "role". Forbidden, Invalid, NotFound.
func (s *Users) List(ctx context.Context, p access.Principal, q listing.Query, after *listing.Cursor) ([]*User, *listing.Cursor, error) {
	if err := p.Require(access.UsersList); err != nil {
		return nil, nil, err
	}
	if err := UserFields.Validate(&q); err != nil {
		return nil, nil, err
	}
	prefix := p.ScopePath
	if id := q.Filters["scopeId"]; id != "" {
		e, err := s.Entities.GetEntity(ctx, id)
		if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(e.Path)) {
			return nil, nil, apperr.NotFoundf("No entity with this id.")
		}
		if err != nil {
			return nil, nil, err
		}
		prefix = e.Path
	}
	all, err := s.Store.ListUsers(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	if role := q.Filters["role"]; role != "" {
		kept := all[:0]
		for _, u := range all {
			if string(u.Role) == role {
				kept = append(kept, u)
			}
		}
		all = kept
	}
	page, next := listing.Apply(UserFields, all, q, after)
	scopes := make([]*hierarchy.Ref, len(page))
	for i, u := range page {
		scopes[i] = &u.Scope
	}
	if err := hierarchy.NameRefs(ctx, s.Entities, scopes); err != nil {
		return nil, nil, err
	}
	return page, next, nil
}

// UpdateUserInput changes a user's details; nil fields are left alone. Role and scope change
// through PUT /roles/{userId}.
type UpdateUserInput struct {
	Email     *string `json:"email,omitempty"`
	FirstName *string `json:"firstName,omitempty"`
	LastName  *string `json:"lastName,omitempty"`
	Mobile    *string `json:"mobile,omitempty"`
}

// Validate reports every bad field at once.
func (in *UpdateUserInput) Validate() error {
	var f apperr.Fields
	if in.Email != nil {
		*in.Email = strings.ToLower(strings.TrimSpace(*in.Email))
		if !hierarchy.ValidEmail(*in.Email) {
			f.Add("email", "invalid", "email must be an e-mail address")
		}
	}
	if in.FirstName != nil && strings.TrimSpace(*in.FirstName) == "" {
		f.Required("firstName", true)
	}
	if in.LastName != nil && strings.TrimSpace(*in.LastName) == "" {
		f.Required("lastName", true)
	}
	return f.Err()
}

func (s *Users) manageable(ctx context.Context, p access.Principal, perm access.Permission, id string) (*User, error) {
	if err := p.Require(perm); err != nil {
		return nil, err
	}
	u, err := s.lookup(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if err := stillManageable(p, u); err != nil {
		return nil, err
	}
	return u, nil
}

// stillManageable repeats manageable's checks on the user as the store is about to write it:
// another admin may have moved the user to another scope or role since the lookup, and the
// change must not follow it there (nor move it back). NotFound, Forbidden.
func stillManageable(p access.Principal, u *User) error {
	if !p.Covers(u.ScopePath) {
		return apperr.NotFoundf("No user with this id.")
	}
	if u.ID != p.UserID && !p.CanGrant(u.Role, u.Scope.Type) {
		return apperr.New(apperr.Forbidden, "role_above_caller", "This user holds permissions you do not hold.")
	}
	return nil
}

// Update changes a user's details. Forbidden, Invalid, NotFound, Conflict "email_taken".
func (s *Users) Update(ctx context.Context, p access.Principal, id string, in UpdateUserInput) (*User, error) {
	if _, err := s.manageable(ctx, p, access.UsersUpdate, id); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return s.named(ctx)(s.Store.UpdateUser(ctx, id, func(u *User) error {
		if err := stillManageable(p, u); err != nil {
			return err
		}
		set := func(dst *string, v *string) {
			if v != nil {
				*dst = strings.TrimSpace(*v)
			}
		}
		set(&u.Email, in.Email)
		set(&u.FirstName, in.FirstName)
		set(&u.LastName, in.LastName)
		set(&u.Mobile, in.Mobile)
		u.UpdatedAt = s.now()
		return nil
	}))
}

// Delete removes a user other than the caller. Forbidden, NotFound.
func (s *Users) Delete(ctx context.Context, p access.Principal, id string) error {
	u, err := s.manageable(ctx, p, access.UsersDelete, id)
	if err != nil {
		return err
	}
	if u.ID == p.UserID {
		return apperr.New(apperr.Forbidden, "self", "You cannot delete yourself.")
	}
	return s.Store.DeleteUser(ctx, id, func(u *User) error { return stillManageable(p, u) })
}

// Welcome issues a new invitation to a user who has not accepted one yet. Forbidden, NotFound,
// Unprocessable "already_active".
func (s *Users) Welcome(ctx context.Context, p access.Principal, id string) (*User, error) {
	u, err := s.manageable(ctx, p, access.UsersWelcome, id)
	if err != nil {
		return nil, err
	}
	if u.Status != UserInvited {
		return nil, apperr.New(apperr.Unprocessable, "already_active", "The user has already set a password.")
	}
	inv, ev, err := s.invite(u, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.Store.PutInvite(ctx, *inv, ev); err != nil {
		return nil, err
	}
	return s.named(ctx)(u, nil)
}

// AssignRoleInput is the body of PUT /roles/{userId}.
type AssignRoleInput struct {
	Role    access.Role `json:"role"`
	ScopeID string      `json:"scopeId,omitempty"`
}

// AssignRole changes a user's role and scope (the scope stays when ScopeID is empty). Nobody
// changes their own role. Forbidden, Invalid, NotFound, Unprocessable.
func (s *Users) AssignRole(ctx context.Context, p access.Principal, id string, in AssignRoleInput) (*User, error) {
	u, err := s.manageable(ctx, p, access.RolesAssign, id)
	if err != nil {
		return nil, err
	}
	if u.ID == p.UserID {
		return nil, apperr.New(apperr.Forbidden, "self", "You cannot change your own role.")
	}
	var f apperr.Fields
	if in.Role == "" {
		f.Required("role", true)
	} else if _, ok := access.Lookup(in.Role); !ok {
		f.Add("role", "invalid", "unknown role; GET /api/v1/roles lists them")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	scopeID := in.ScopeID
	if scopeID == "" {
		scopeID = u.Scope.ID
	}
	scope, err := s.scopeFor(ctx, p, in.Role, scopeID)
	if err != nil {
		return nil, err
	}
	return s.Store.UpdateUser(ctx, id, func(u *User) error {
		if err := stillManageable(p, u); err != nil {
			return err
		}
		u.Role, u.Scope, u.ScopePath = in.Role, hierarchy.Ref{Type: scope.Type, ID: scope.ID, Name: scope.Name}, scope.Path
		u.UpdatedAt = s.now()
		return nil
	})
}

// Roles returns the role definitions. Forbidden.
func Roles(p access.Principal) ([]access.RoleDef, error) {
	if err := p.Require(access.RolesList); err != nil {
		return nil, err
	}
	return access.Roles(), nil
}
