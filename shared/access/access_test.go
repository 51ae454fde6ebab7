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
	da := access.Principal{Role: access.DistributorAdmin, ScopeType: access.Distributor}
	pa := access.Principal{Role: access.PartnerAdmin, ScopeType: access.Partner}
	ta := access.Principal{Role: access.TenantAdmin, ScopeType: access.Tenant}
	fin := access.Principal{Role: access.Finance, ScopeType: access.Distributor}
	plat := access.Principal{Role: access.PlatformAdmin, ScopeType: access.Platform}
	cases := []struct {
		name   string
		caller access.Principal
		role   access.Role
		at     access.EntityType
		ok     bool
	}{
		{"OKPartnerAdminGrantsTenantAdmin", pa, access.TenantAdmin, access.Tenant, true},
		{"OKPartnerAdminGrantsPartnerViewer", pa, access.PartnerViewer, access.Partner, true},
		// finance reads billing runs only at the platform, distributors only at a distributor.
		{"OKDistributorAdminGrantsFinance", da, access.Finance, access.Distributor, true},
		{"OKDistributorAdminGrantsFinanceAtPartner", da, access.Finance, access.Partner, true},
		{"OKPartnerAdminGrantsFinance", pa, access.Finance, access.Partner, true},
		{"OKPlatformAdminGrantsFinanceAtPlatform", plat, access.Finance, access.Platform, true},
		{"ErrFinanceAtThePlatform", da, access.Finance, access.Platform, false},
		{"ErrPartnerAdminGrantsDistributorAdmin", pa, access.DistributorAdmin, access.Distributor, false},
		{"ErrPartnerAdminGrantsPlatformAdmin", pa, access.PlatformAdmin, access.Platform, false},
		{"ErrTenantAdminGrantsFinance", ta, access.Finance, access.Partner, false},
		{"ErrDistributorAdminGrantsPlatformViewer", da, access.PlatformViewer, access.Platform, false},
		{"ErrRoleNotHeldThere", da, access.TenantAdmin, access.Partner, false},
		{"ErrFinanceGrantsNothing", fin, access.PartnerViewer, access.Partner, false},
		{"ErrUnknownRole", plat, "king", access.Platform, false},
		{"ErrCallerWithoutScopeType", access.Principal{Role: access.PlatformAdmin}, access.TenantViewer, access.Tenant, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.caller.CanGrant(c.role, c.at); got != c.ok {
				t.Fatalf("CanGrant(%s at %s) by %s = %v", c.role, c.at, c.caller.Role, got)
			}
		})
	}
	if pa.CanGrantSomewhere(access.DistributorAdmin) || ta.CanGrantSomewhere(access.Finance) || !pa.CanGrantSomewhere(access.Finance) {
		t.Error("CanGrantSomewhere disagrees with CanGrant")
	}
	for _, d := range access.Roles() {
		if len(d.Permissions) == 0 || len(d.ScopeTypes) == 0 || len(d.PermissionsAt) != len(d.ScopeTypes) {
			t.Errorf("role %s is empty", d.Name)
		}
	}
}

// No role held below the platform holds a platform-only permission, and what a caller holds is
// what its role grants at its scope's type.
func TestPermissionsAt(t *testing.T) {
	for _, d := range access.Roles() {
		for _, st := range d.ScopeTypes {
			p := access.Principal{Role: d.Name, ScopeType: st}
			for _, perm := range []access.Permission{access.BillingRunsRead, access.BillingRunsCreate} {
				if st != access.Platform && p.Can(perm) {
					t.Errorf("%s at %s holds %s", d.Name, st, perm)
				}
			}
			for _, perm := range d.PermissionsAt[st] {
				if !p.Can(perm) {
					t.Errorf("%s at %s lists %s but does not hold it", d.Name, st, perm)
				}
			}
		}
	}
	fin := access.Principal{Role: access.Finance, ScopeType: access.Partner}
	if fin.Can(access.DistributorsList) || !fin.Can(access.PartnersRead) || !fin.Can(access.InvoicesList) {
		t.Error("finance at a partner: no distributor permission, its partner and invoices readable")
	}
	if !(access.Principal{Role: access.Finance, ScopeType: access.Platform}).Can(access.BillingRunsRead) {
		t.Error("finance at the platform reads billing runs")
	}
}
