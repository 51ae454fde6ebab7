// Package identity holds users, their roles and sessions: login, refresh with rotation and reuse
// detection, logout, federated sign-in and invitations. It knows nothing of DynamoDB or HTTP.
package identity

import (
	"context"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/outbox"
)

// User states.
const (
	UserInvited = "invited"
	UserActive  = "active"
)

// User is a person (or an automation account) holding one role at one scope entity.
type User struct {
	ID          string        `json:"id"`
	Email       string        `json:"email"`
	FirstName   string        `json:"firstName"`
	LastName    string        `json:"lastName"`
	Mobile      string        `json:"mobile,omitempty"`
	Role        access.Role   `json:"role"`
	Scope       hierarchy.Ref `json:"scope"`
	Status      string        `json:"status"`
	CreatedAt   time.Time     `json:"createdAt"`
	UpdatedAt   time.Time     `json:"updatedAt"`
	LastLoginAt *time.Time    `json:"lastLoginAt,omitempty"`
	ScopePath   string        `json:"-"`
	Password    string        `json:"-"` // argon2id hash, never the password
	Version     int64         `json:"-"`
}

// Principal returns the caller this user acts as.
func (u *User) Principal() access.Principal {
	return access.Principal{UserID: u.ID, Email: u.Email, Role: u.Role, ScopeID: u.Scope.ID,
		ScopeType: u.Scope.Type, ScopePath: u.ScopePath}
}

// Invite is a one-time invitation link; only its hash is stored.
type Invite struct {
	Hash      string
	UserID    string
	ExpiresAt time.Time
}

// RefreshToken is a stored (hashed) refresh token. Tokens of one login form a family; presenting a
// spent token revokes the family.
type RefreshToken struct {
	Hash      string
	Family    string
	UserID    string
	ExpiresAt time.Time
	Spent     bool
}

// Store keeps users and their credentials. Every multi-item change is atomic.
type Store interface {
	// CreateUser stores u, reserves its e-mail, counts it on its scope entity and stores the
	// invite and events, atomically. Conflict "email_taken"; NotFound when the scope is gone.
	CreateUser(ctx context.Context, u *User, inv *Invite, events ...outbox.Event) error
	// GetUser returns the user with id. NotFound.
	GetUser(ctx context.Context, id string) (*User, error)
	// GetUserByEmail returns the user with that e-mail (case-insensitive). NotFound.
	GetUserByEmail(ctx context.Context, email string) (*User, error)
	// UpdateUser reads the user, calls fn, and writes it back if unchanged meanwhile, moving the
	// e-mail reservation and the scope count when they change. fn's error, NotFound, Conflict.
	UpdateUser(ctx context.Context, id string, fn func(*User) error) (*User, error)
	// DeleteUser removes the user, its e-mail reservation and its count on the scope if check
	// accepts the user as it is at the delete (check sees the version the delete is conditioned
	// on). check's error, NotFound, Conflict.
	DeleteUser(ctx context.Context, id string, check func(*User) error) error
	// ListUsers returns every user whose scope path starts with pathPrefix.
	ListUsers(ctx context.Context, pathPrefix string) ([]*User, error)

	// PutInvite stores an invitation with its events, replacing none.
	PutInvite(ctx context.Context, inv Invite, events ...outbox.Event) error
	// AcceptInvite spends the invite and activates its user with the password hash, atomically.
	// Unauthorized "invalid_invite" when the invite is unknown, spent or expired, or its user is
	// no longer invited (another of the user's links was redeemed first).
	AcceptInvite(ctx context.Context, hash, passwordHash string, now time.Time) (*User, error)

	// PutRefreshToken stores a new token of a new or existing family.
	PutRefreshToken(ctx context.Context, t RefreshToken) error
	// RotateRefreshToken spends the token with oldHash and stores next in its family, atomically.
	// A spent token presented again revokes its whole family. Unauthorized when the token is
	// unknown, spent, expired or its family revoked. Returns the spent token.
	RotateRefreshToken(ctx context.Context, oldHash string, next RefreshToken, now time.Time) (*RefreshToken, error)
	// RevokeFamilyOf revokes the family of the token with hash. Unauthorized when unknown.
	RevokeFamilyOf(ctx context.Context, hash string) error

	// RecordLoginFailure counts a failed login for email in the window and returns the count.
	RecordLoginFailure(ctx context.Context, email string, now time.Time, window time.Duration) (int, error)
	// LoginFailures returns the failures counted for email in the current window.
	LoginFailures(ctx context.Context, email string, now time.Time) (int, error)
	// ResetLoginFailures forgets the failures of email.
	ResetLoginFailures(ctx context.Context, email string) error

	// LinkedUser returns the user id linked to a federated identity. NotFound.
	LinkedUser(ctx context.Context, issuer, subject string) (string, error)
	// LinkIdentity links a federated identity to a user.
	LinkIdentity(ctx context.Context, issuer, subject, userID string) error
}
