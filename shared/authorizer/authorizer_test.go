package authorizer_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/authorizer"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/identity"
	"github.com/channelbilling/cms/shared/usagekeys"
)

// tokens maps a bearer token to its subject.
type tokens map[string]string

func (t tokens) Verify(tok string) (auth.Claims, error) {
	sub, ok := t[tok]
	if !ok {
		return auth.Claims{}, errors.New("bad token")
	}
	return auth.Claims{Subject: sub}, nil
}

// users is an identity.Store that only answers GetUser (the authorizer's one call).
type users struct {
	identity.Store
	byID map[string]*identity.User
}

func (u users) GetUser(_ context.Context, id string) (*identity.User, error) {
	if x, ok := u.byID[id]; ok {
		return x, nil
	}
	return nil, apperr.NotFoundf("No user.")
}

// entities is a hierarchy.Store that only answers GetEntities.
type entities struct {
	hierarchy.Store
	byID map[string]*hierarchy.Entity
}

func (e entities) GetEntities(_ context.Context, ids []string) (map[string]*hierarchy.Entity, error) {
	out := map[string]*hierarchy.Entity{}
	for _, id := range ids {
		if x, ok := e.byID[id]; ok {
			out[id] = x
		}
	}
	return out, nil
}

// The channel of the tests: a distributor with a partner and its tenant, and a direct partner.
func fixture(t *testing.T) (*authorizer.Authorizer, *usagekeys.Deriver) {
	t.Helper()
	ent := func(id string, typ access.EntityType, path string) *hierarchy.Entity {
		return &hierarchy.Entity{ID: id, Type: typ, Path: path, Status: hierarchy.StatusActive}
	}
	ents := map[string]*hierarchy.Entity{
		"platform": ent("platform", access.Platform, "/platform/"),
		"dst":      ent("dst", access.Distributor, "/platform/dst/"),
		"prt":      ent("prt", access.Partner, "/platform/dst/prt/"),
		"ten":      ent("ten", access.Tenant, "/platform/dst/prt/ten/"),
		"prt2":     ent("prt2", access.Partner, "/platform/prt2/"),
		"ten2":     ent("ten2", access.Tenant, "/platform/prt2/ten2/"),
	}
	user := func(id string, role access.Role, scope string) *identity.User {
		e := ents[scope]
		return &identity.User{ID: id, Email: id + "@example.com", Role: role, Scope: hierarchy.Ref{Type: e.Type, ID: e.ID},
			ScopePath: e.Path, Status: identity.UserActive}
	}
	us := map[string]*identity.User{
		"u-platform": user("u-platform", access.PlatformAdmin, "platform"),
		"u-dst":      user("u-dst", access.DistributorAdmin, "dst"),
		"u-prt":      user("u-prt", access.PartnerAdmin, "prt"),
		"u-ten":      user("u-ten", access.TenantAdmin, "ten"),
		"u-ten2":     user("u-ten2", access.TenantViewer, "ten2"),
	}
	toks := tokens{}
	for id := range us {
		toks["tok-"+id] = id
	}
	d, err := usagekeys.NewDeriver(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &authorizer.Authorizer{Verifier: toks, Users: users{byID: us}, Entities: entities{byID: ents}, UsageKeys: d}, d
}

func request(token string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	return events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type:      "REQUEST",
		MethodArn: "arn:aws:execute-api:eu-west-1:123456789012:abcdef1234/prod/GET/api/v1/tenants",
		Headers:   map[string]string{"Authorization": "Bearer " + token},
	}
}

func TestHandleUsageIdentifierKey(t *testing.T) {
	a, d := fixture(t)
	for _, tc := range []struct {
		name, user, owner string
	}{
		{"tenant user: its partner's key", "u-ten", "prt"},
		{"tenant user of a direct partner: that partner's key", "u-ten2", "prt2"},
		{"partner user: the partner's key", "u-prt", "prt"},
		{"distributor user: the distributor's key", "u-dst", "dst"},
		{"platform user: the platform's key", "u-platform", "platform"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := a.Handle(context.Background(), request("tok-"+tc.user))
			if err != nil {
				t.Fatal(err)
			}
			if want := d.Value(tc.owner); res.UsageIdentifierKey != want {
				t.Errorf("usageIdentifierKey %q, want %s's key %q", res.UsageIdentifierKey, tc.owner, want)
			}
			if res.PrincipalID != tc.user {
				t.Errorf("principalId %q", res.PrincipalID)
			}
		})
	}
	// Two partners never share a key: one partner's tenants cannot use up another's quota.
	a1, _ := a.Handle(context.Background(), request("tok-u-ten"))
	a2, _ := a.Handle(context.Background(), request("tok-u-ten2"))
	if a1.UsageIdentifierKey == a2.UsageIdentifierKey {
		t.Error("the tenants of two partners are metered on one key")
	}
}

func TestHandleRefuses(t *testing.T) {
	a, _ := fixture(t)
	t.Run("ErrBadToken", func(t *testing.T) {
		res, err := a.Handle(context.Background(), request("nope"))
		if !errors.Is(err, authorizer.ErrUnauthorized) || res.UsageIdentifierKey != "" {
			t.Errorf("%+v, %v", res, err)
		}
	})
	t.Run("ErrNoDeriver", func(t *testing.T) {
		a.UsageKeys = nil
		if _, err := a.Handle(context.Background(), request("tok-u-prt")); !errors.Is(err, authorizer.ErrUnauthorized) {
			t.Errorf("without a deriver: %v, want Unauthorized", err)
		}
	})
}
