// Package app builds the platform's dependencies from configuration: the one place where the
// adapters are wired to the domain services. Every Lambda main and the local runner use it.
package app

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/auth"
)

// Config is the whole configuration, read from the environment.
type Config struct {
	Table            string        // CMS_TABLE
	PlatformName     string        // CMS_PLATFORM_NAME
	PlatformCurrency string        // CMS_PLATFORM_CURRENCY
	TokenIssuer      string        // CMS_TOKEN_ISSUER
	TokenAudience    string        // CMS_TOKEN_AUDIENCE
	AccessTTL        time.Duration // CMS_ACCESS_TTL
	RefreshTTL       time.Duration // CMS_REFRESH_TTL
	MaxLoginFailures int           // CMS_MAX_LOGIN_FAILURES
	FailureWindow    time.Duration // CMS_LOGIN_FAILURE_WINDOW
	// Providers are the federated identity providers: CMS_IDP_<NAME>_JWKS_URL, _ISSUER and
	// _AUDIENCE for NAME in ENTRA and GOOGLE.
	Providers   []auth.Provider
	LinkByEmail bool   // CMS_IDP_LINK_BY_EMAIL
	LogLevel    string // CMS_LOG_LEVEL: debug, info, warn, error
	// EventBus is the EventBridge bus the outbox publisher puts the domain events on: a bus name
	// or a bus ARN. CMS_EVENT_BUS.
	EventBus string
	// UsageQueue is the usage records queue (name or URL): the DLQ replay and the local feeders
	// use it; in AWS its event source mapping feeds the usagequeue function. CMS_USAGE_QUEUE.
	UsageQueue string
	// UsageDLQ is the usage dead-letter queue (name or URL) the usage consumers send invalid
	// records to. CMS_USAGE_DLQ.
	UsageDLQ string
	// UsageBucket is the bucket of the usage file drops (usage/ prefix, reports/ prefix).
	// CMS_USAGE_BUCKET.
	UsageBucket string
	// UsageStream is the usage Kinesis stream (name). CMS_USAGE_STREAM.
	UsageStream string
	// BillingQueue is the billing work queue (name or URL): runs fan out one message per tenant
	// on it; its event source mapping feeds the billingworker function. CMS_BILLING_QUEUE.
	BillingQueue string
	// ExportsBucket is the bucket of the finance exports (exports/<YYYY-MM>/).
	// CMS_EXPORTS_BUCKET.
	ExportsBucket string
}

// Defaults returns the configuration with every default filled in.
func Defaults() Config {
	return Config{
		Table: "cms", PlatformName: "Platform", PlatformCurrency: "EUR",
		TokenIssuer: "cms", TokenAudience: "cms-api",
		AccessTTL: 15 * time.Minute, RefreshTTL: 30 * 24 * time.Hour,
		MaxLoginFailures: 5, FailureWindow: 15 * time.Minute, LogLevel: "info",
		EventBus:   "cms-events",
		UsageQueue: "cms-usage", UsageDLQ: "cms-usage-dlq", UsageBucket: "cms-usage", UsageStream: "cms-usage",
		BillingQueue: "cms-billing", ExportsBucket: "cms-exports",
	}
}

// FromEnv reads the configuration from the environment over the defaults. It returns an error
// naming every bad variable.
func FromEnv() (Config, error) {
	c := Defaults()
	var errs []error
	str := func(name string, dst *string) {
		if v := os.Getenv(name); v != "" {
			*dst = v
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			*dst = d
		}
	}
	str("CMS_TABLE", &c.Table)
	str("CMS_PLATFORM_NAME", &c.PlatformName)
	str("CMS_PLATFORM_CURRENCY", &c.PlatformCurrency)
	str("CMS_TOKEN_ISSUER", &c.TokenIssuer)
	str("CMS_TOKEN_AUDIENCE", &c.TokenAudience)
	str("CMS_LOG_LEVEL", &c.LogLevel)
	str("CMS_EVENT_BUS", &c.EventBus)
	str("CMS_USAGE_QUEUE", &c.UsageQueue)
	str("CMS_USAGE_DLQ", &c.UsageDLQ)
	str("CMS_USAGE_BUCKET", &c.UsageBucket)
	str("CMS_USAGE_STREAM", &c.UsageStream)
	str("CMS_BILLING_QUEUE", &c.BillingQueue)
	str("CMS_EXPORTS_BUCKET", &c.ExportsBucket)
	dur("CMS_ACCESS_TTL", &c.AccessTTL)
	dur("CMS_REFRESH_TTL", &c.RefreshTTL)
	dur("CMS_LOGIN_FAILURE_WINDOW", &c.FailureWindow)
	if v := os.Getenv("CMS_MAX_LOGIN_FAILURES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("CMS_MAX_LOGIN_FAILURES: %w", err))
		}
		c.MaxLoginFailures = n
	}
	c.LinkByEmail = os.Getenv("CMS_IDP_LINK_BY_EMAIL") == "true"
	for _, name := range []string{"ENTRA", "GOOGLE"} {
		url := os.Getenv("CMS_IDP_" + name + "_JWKS_URL")
		if url == "" {
			continue
		}
		c.Providers = append(c.Providers, auth.Provider{Name: strings.ToLower(name), JWKSURL: url,
			Issuer: os.Getenv("CMS_IDP_" + name + "_ISSUER"), Audience: os.Getenv("CMS_IDP_" + name + "_AUDIENCE")})
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// Validate reports every bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.Table == "" {
		errs = append(errs, errors.New("CMS_TABLE is required"))
	}
	if len(c.PlatformCurrency) != 3 {
		errs = append(errs, errors.New("CMS_PLATFORM_CURRENCY must be an ISO 4217 code"))
	}
	if c.AccessTTL <= 0 || c.AccessTTL > 24*time.Hour {
		errs = append(errs, errors.New("CMS_ACCESS_TTL must be between 0 and 24h"))
	}
	if c.RefreshTTL <= 0 {
		errs = append(errs, errors.New("CMS_REFRESH_TTL must be positive"))
	}
	if c.MaxLoginFailures < 1 || c.FailureWindow <= 0 {
		errs = append(errs, errors.New("CMS_MAX_LOGIN_FAILURES and CMS_LOGIN_FAILURE_WINDOW must be positive"))
	}
	if !validEventBus(c.EventBus) {
		errs = append(errs, errors.New("CMS_EVENT_BUS must be an EventBridge bus name ([A-Za-z0-9._/-], at most 256) or a bus ARN"))
	}
	for _, v := range [][2]string{{"CMS_USAGE_QUEUE", c.UsageQueue}, {"CMS_USAGE_DLQ", c.UsageDLQ}, {"CMS_USAGE_BUCKET", c.UsageBucket}, {"CMS_USAGE_STREAM", c.UsageStream},
		{"CMS_BILLING_QUEUE", c.BillingQueue}, {"CMS_EXPORTS_BUCKET", c.ExportsBucket}} {
		if v[1] == "" {
			errs = append(errs, errors.New(v[0]+" is required"))
		}
	}
	for _, p := range c.Providers {
		if p.Issuer == "" || p.Audience == "" {
			errs = append(errs, fmt.Errorf("identity provider %s needs an issuer and an audience", p.Name))
		}
	}
	return errors.Join(errs...)
}

// validEventBus reports whether s is an EventBridge bus name or a bus ARN (what PutEvents
// accepts as EventBusName).
func validEventBus(s string) bool {
	if strings.HasPrefix(s, "arn:") {
		return len(s) <= 1600 && strings.Contains(s, ":event-bus/") && !strings.HasSuffix(s, "/")
	}
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/-", r)
		if !ok {
			return false
		}
	}
	return true
}
