package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/listing"
)

// Pager signs and checks next tokens. A token carries the query, the cursor, the route and the
// caller's scope, under an HMAC: a modified token, or one replayed on another route or by another
// scope, is refused with 400.
type Pager struct{ key []byte }

// NewPager returns a Pager signing with key (at least 32 random bytes).
func NewPager(key []byte) *Pager { return &Pager{key: key} }

type token struct {
	Route string         `json:"r"`
	Scope string         `json:"s"`
	Query listing.Query  `json:"q"`
	After listing.Cursor `json:"a"`
}

func (p *Pager) mac(b []byte) []byte {
	m := hmac.New(sha256.New, p.key)
	m.Write(b)
	return m.Sum(nil)
}

// Sign returns the next token for a query continuing after the cursor.
func (p *Pager) Sign(route, scope string, q listing.Query, after listing.Cursor) string {
	b, _ := json.Marshal(token{Route: route, Scope: scope, Query: q, After: after}) // plain structs always marshal
	enc := base64.RawURLEncoding
	return enc.EncodeToString(b) + "." + enc.EncodeToString(p.mac(b))
}

// Open checks a token and returns its query and cursor. Invalid "invalid_next" when the token was
// changed or belongs to another route or scope.
func (p *Pager) Open(route, scope, tok string) (listing.Query, *listing.Cursor, error) {
	bad := apperr.Field("next", "invalid_next", "the next token is invalid; start the listing again")
	body, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return listing.Query{}, nil, bad
	}
	enc := base64.RawURLEncoding
	b, err1 := enc.DecodeString(body)
	s, err2 := enc.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(s, p.mac(b)) {
		return listing.Query{}, nil, bad
	}
	var t token
	if err := json.Unmarshal(b, &t); err != nil || t.Route != route || t.Scope != scope {
		return listing.Query{}, nil, bad
	}
	return t.Query, &t.After, nil
}
