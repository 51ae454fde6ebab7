package access_test

import (
	"testing"

	"github.com/channelbilling/cms/shared/access"
)

func TestCovers(t *testing.T) {
	p := access.Principal{Role: access.PartnerAdmin, ScopePath: "/platform/d1/p1/"}
	cases := []struct {
		name  string
		path  string
		cover bool
		above bool
	}{
		{"Self", "/platform/d1/p1/", true, false},
		{"Child", "/platform/d1/p1/t1/", true, true},
		{"Sibling", "/platform/d1/p2/", false, false},
		{"SiblingPrefix", "/platform/d1/p10/", false, false},
		{"Ancestor", "/platform/d1/", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := p.Covers(c.path); got != c.cover {
				t.Errorf("Covers(%s) = %v", c.path, got)
			}
			if got := p.Above(c.path); got != c.above {
				t.Errorf("Above(%s) = %v", c.path, got)
			}
		})
	}
}

func TestGrant(t *testing.T) {
	pa := access.Principal{Role: access.PartnerAdmin}
	if !pa.CanGrant(access.TenantAdmin) || !pa.CanGrant(access.PartnerViewer) {
		t.Error("a partner admin grants tenant and partner roles")
	}
	if pa.CanGrant(access.DistributorAdmin) || pa.CanGrant(access.PlatformAdmin) {
		t.Error("a partner admin must not grant roles above its own")
	}
	fin := access.Principal{Role: access.Finance}
	if fin.CanGrant(access.PartnerViewer) {
		t.Error("finance holds no user permissions and must grant nothing")
	}
	for _, d := range access.Roles() {
		if len(d.Permissions) == 0 || len(d.ScopeTypes) == 0 {
			t.Errorf("role %s is empty", d.Name)
		}
	}
}
