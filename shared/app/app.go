package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/authorizer"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/identity"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/routes"
	"github.com/channelbilling/cms/shared/subscriptions"
	"github.com/channelbilling/cms/shared/tablestore"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usagekeys"
)

// Names of the generated secrets kept in the table.
const (
	secretSigningKeys = "signing-keys"
	secretPagination  = "pagination-key"
)

// Deps are the built dependencies of the platform.
type Deps struct {
	Config    Config
	Log       *slog.Logger
	Store     *tablestore.Store
	Keys      []auth.SigningKey
	Pager     *httpapi.Pager
	Hierarchy *hierarchy.Service
	Catalog   *catalog.Service
	// PriceLists answers entities' effective prices and keeps tenants' overrides.
	PriceLists    *catalog.PriceLists
	Subscriptions *subscriptions.Service
	Users         *identity.Users
	Sessions      *identity.Sessions
	Verifier      *auth.Verifier
	// Usage is the one rating path of every usage channel and GET /usage; UsageStore its
	// exactly-once store (shared/usage, docs/usage.md).
	Usage      *usage.Service
	UsageStore *tablestore.Usage
	// Billing runs billing, commissions and exports and answers their routes (billing.go).
	Billing *billing.Service
	// UsageKeys derives the API Gateway key values that meter callers (shared/usagekeys).
	UsageKeys *usagekeys.Deriver
}

// NewLogger returns the JSON logger used in Lambda and locally.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // unknown levels fall back to info
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// New builds every dependency. It reads (creating on first use) the signing keys, the
// pagination key and the usage key secret from the table. It fails on unreachable storage or bad configuration.
func New(ctx context.Context, cfg Config, awsCfg aws.Config, log *slog.Logger, ddbOpts ...func(*dynamodb.Options)) (*Deps, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = NewLogger(cfg.LogLevel)
	}
	store := tablestore.NewFromConfig(awsCfg, cfg.Table, ddbOpts...)
	d := &Deps{Config: cfg, Log: log, Store: store}
	rawKeys, err := store.Secret(ctx, secretSigningKeys, func() ([]byte, error) {
		k, err := auth.GenerateSigningKey()
		if err != nil {
			return nil, err
		}
		return auth.MarshalSigningKeys([]auth.SigningKey{k})
	})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if d.Keys, err = auth.UnmarshalSigningKeys(rawKeys); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	pageKey, err := store.Secret(ctx, secretPagination, nil)
	if err != nil {
		return nil, fmt.Errorf("pagination key: %w", err)
	}
	d.Pager = httpapi.NewPager(pageKey)
	// Created here with the other secrets, so that it exists before any token does: the
	// authorizer, which may not write the table, only reads it.
	if d.UsageKeys, err = usageDeriver(ctx, store); err != nil {
		return nil, err
	}
	issuer, err := auth.NewIssuer(d.Keys, cfg.TokenIssuer, cfg.TokenAudience, cfg.AccessTTL, time.Now)
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	jwks, err := auth.PublicJWKS(d.Keys)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if d.Verifier, err = auth.NewVerifierFromJWKS(jwks, cfg.TokenIssuer, cfg.TokenAudience); err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	d.Catalog = &catalog.Service{Store: store, PlatformCurrency: cfg.PlatformCurrency}
	d.PriceLists = &catalog.PriceLists{Catalog: store, Entities: store, PlatformCurrency: cfg.PlatformCurrency}
	d.Subscriptions = &subscriptions.Service{Store: store, Entities: store, Plans: store, PlatformCurrency: cfg.PlatformCurrency}
	// Deleting a tenant first records its subscriptions' cancellations that have come due, so
	// that the delete rule (no active subscription) reads a current count.
	d.Hierarchy = &hierarchy.Service{Store: store, PlatformCurrency: cfg.PlatformCurrency, BeforeDelete: d.Subscriptions.SettleTenant}
	d.wireUsage()
	d.wireBilling(awsCfg)
	d.Users = &identity.Users{Store: store, Entities: store}
	d.Sessions = &identity.Sessions{Store: store, Issuer: issuer, LinkByEmail: cfg.LinkByEmail,
		RefreshTTL: cfg.RefreshTTL, MaxFailures: cfg.MaxLoginFailures, FailureWindow: cfg.FailureWindow}
	if len(cfg.Providers) > 0 {
		fed, err := auth.NewFederatedVerifier(ctx, cfg.Providers)
		if err != nil {
			return nil, fmt.Errorf("identity providers: %w", err)
		}
		d.Sessions.IDTokens = fed
	}
	return d, nil
}

// register adds the routes of one function to api.
func (d *Deps) register(api *httpapi.API, fn string) error {
	switch fn {
	case routes.FnAuth:
		routes.Auth(api, d.Sessions, func() ([]byte, error) { return auth.PublicJWKS(d.Keys) })
	case routes.FnDistributors:
		routes.Hierarchy(api, d.Hierarchy, access.Distributor)
	case routes.FnPartners:
		routes.Hierarchy(api, d.Hierarchy, access.Partner)
	case routes.FnTenants:
		routes.Hierarchy(api, d.Hierarchy, access.Tenant)
	case routes.FnUsers:
		routes.Users(api, d.Users)
	case routes.FnRoles:
		routes.Roles(api, d.Users)
	case routes.FnPricing:
		routes.Pricing(api, d.Catalog)
	case routes.FnPlans:
		routes.Plans(api, d.Catalog)
	case routes.FnPriceLists:
		routes.PriceLists(api, d.PriceLists)
	case routes.FnSubscriptions:
		routes.Subscriptions(api, d.Subscriptions)
	case routes.FnUsage:
		routes.Usage(api, d.Usage)
	case routes.FnBilling:
		routes.Billing(api, d.Billing)
	case routes.FnInvoices:
		routes.Invoices(api, d.Billing)
	case routes.FnCommissions:
		routes.Commissions(api, d.Billing)
	case routes.FnDocs:
		spec, err := Spec()
		if err != nil {
			return err
		}
		routes.Docs(api, spec)
	default:
		return fmt.Errorf("unknown function %q", fn)
	}
	return nil
}

// Handler returns the HTTP handler of one function (see routes.HTTPFunctions).
func (d *Deps) Handler(fn string) (*httpapi.API, error) {
	api := httpapi.New(d.Pager, d.Store, d.Log)
	if err := d.register(api, fn); err != nil {
		return nil, err
	}
	return api, nil
}

// Authorizer returns the Lambda authorizer.
func (d *Deps) Authorizer() *authorizer.Authorizer {
	return &authorizer.Authorizer{Verifier: d.Verifier, Users: d.Store, Entities: d.Store, UsageKeys: d.UsageKeys, Log: d.Log}
}

// AllRoutes returns every HTTP route of every function, for the OpenAPI document, the local
// runner's routing table and the infrastructure. No dependency is needed to list them.
func AllRoutes() []httpapi.Route {
	d := &Deps{}
	api := httpapi.New(nil, nil, slog.Default())
	for _, fn := range routes.HTTPFunctions {
		if fn == routes.FnDocs {
			routes.Docs(api, nil)
			continue
		}
		_ = d.register(api, fn) // only FnDocs can fail, and it is handled above
	}
	return api.Routes()
}

// Spec returns the OpenAPI document of every route.
func Spec() ([]byte, error) {
	return httpapi.OpenAPI(AllRoutes(), "Channel Billing Platform API", "1.0.0")
}

// Bootstrap creates the platform entity and, when no user holds that e-mail, the first platform
// admin. It is how the first admin comes to exist: never through an unauthenticated API call.
// It returns whether the admin was created.
func (d *Deps) Bootstrap(ctx context.Context, email, password string) (bool, error) {
	now := time.Now().UTC()
	if err := d.Store.EnsurePlatform(ctx, d.Config.PlatformName, d.Config.PlatformCurrency, now); err != nil {
		return false, err
	}
	if _, err := d.Store.GetUserByEmail(ctx, email); err == nil {
		return false, nil
	} else if !apperr.Is(err, apperr.NotFound) {
		return false, err
	}
	if err := auth.ValidatePasswordStrength(password); err != nil {
		return false, fmt.Errorf("admin password: %w", err)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return false, err
	}
	u := &identity.User{ID: ids.New("usr"), Email: email, FirstName: "Platform", LastName: "Admin",
		Role: access.PlatformAdmin, Scope: hierarchy.Ref{Type: access.Platform, ID: access.PlatformID, Name: d.Config.PlatformName},
		ScopePath: access.PlatformPath, Status: identity.UserActive, Password: hash, CreatedAt: now, UpdatedAt: now}
	if err := d.Store.CreateUser(ctx, u, nil); err != nil {
		if apperr.Is(err, apperr.Conflict) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

var _ http.Handler = (*httpapi.API)(nil)

// BootstrapEvent is the input of the bootstrap function.
type BootstrapEvent struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// BootstrapResult is the output of the bootstrap function; it never echoes the password.
type BootstrapResult struct {
	Email   string `json:"email"`
	Created bool   `json:"created"`
}

// BootstrapHandler is the Lambda entry point of the bootstrap function.
func (d *Deps) BootstrapHandler(ctx context.Context, ev BootstrapEvent) (BootstrapResult, error) {
	if !hierarchy.ValidEmail(ev.Email) {
		return BootstrapResult{}, fmt.Errorf("email: not an e-mail address")
	}
	created, err := d.Bootstrap(ctx, ev.Email, ev.Password)
	if err != nil {
		return BootstrapResult{}, err
	}
	d.Log.Info("bootstrap", "email", ev.Email, "created", created)
	return BootstrapResult{Email: ev.Email, Created: created}, nil
}
