// Command infra is the CDK app of the channel billing platform: it synthesizes the Cms stack
// (stack.go) into a cloud assembly (CDK_OUTDIR, default cdk.out). `make synth` runs it directly,
// without the CDK CLI; `make deploy` deploys the assembly with the CLI.
//
// Settings are CDK context values named like the functions' environment variables
// (CMS_PLATFORM_CURRENCY, CMS_TOKEN_ISSUER, CMS_IDP_ENTRA_JWKS_URL, ...), plus stackName,
// alarmEmail and apiKeysOptional ("true": methods do not require the API key, for the first
// deployment over a stack that had none; docs/deploy.md). Pass them as CDK_CONTEXT_JSON='{"CMS_PLATFORM_CURRENCY":"USD"}' (or -c with the
// CLI). CMS_* variables of the shell that runs the synthesis are ignored.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/channelbilling/cms/shared/app"
)

func main() {
	defer jsii.Close()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "infra:", err)
		os.Exit(1)
	}
}

func run() error {
	cdkApp := awscdk.NewApp(nil)
	cfg, err := configFromContext(cdkApp)
	if err != nil {
		return err
	}
	stackName := contextString(cdkApp, "stackName")
	if stackName == "" {
		stackName = "Cms"
	}
	props := &CmsStackProps{Config: &cfg, AlarmEmail: contextString(cdkApp, "alarmEmail"),
		APIKeysOptional: contextString(cdkApp, "apiKeysOptional") == "true"}
	// Pinned to the CLI's account and region when it provides them; environment-agnostic otherwise.
	if acct, region := os.Getenv("CDK_DEFAULT_ACCOUNT"), os.Getenv("CDK_DEFAULT_REGION"); acct != "" && region != "" {
		props.Env = &awscdk.Environment{Account: jsii.String(acct), Region: jsii.String(region)}
	}
	if _, err := NewCmsStack(cdkApp, stackName, props); err != nil {
		return err
	}
	cdkApp.Synth(nil)
	return nil
}

// configFromContext reads the functions' configuration the way they read it (app.FromEnv), from
// the CDK context values named CMS_*.
func configFromContext(a awscdk.App) (app.Config, error) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "CMS_") {
			os.Unsetenv(name)
		}
	}
	for _, name := range contextEnvNames {
		if v := contextString(a, name); v != "" {
			os.Setenv(name, v)
		}
	}
	os.Setenv("CMS_TABLE", "from-the-stack")
	cfg, err := app.FromEnv()
	if err != nil {
		return app.Config{}, fmt.Errorf("settings: %w", err)
	}
	return cfg, nil
}

// contextEnvNames are the settings taken from the CDK context (CMS_TABLE is the stack's).
var contextEnvNames = []string{
	"CMS_PLATFORM_NAME", "CMS_PLATFORM_CURRENCY", "CMS_TOKEN_ISSUER", "CMS_TOKEN_AUDIENCE",
	"CMS_ACCESS_TTL", "CMS_REFRESH_TTL", "CMS_MAX_LOGIN_FAILURES", "CMS_LOGIN_FAILURE_WINDOW",
	"CMS_LOG_LEVEL", "CMS_IDP_LINK_BY_EMAIL",
	"CMS_IDP_ENTRA_JWKS_URL", "CMS_IDP_ENTRA_ISSUER", "CMS_IDP_ENTRA_AUDIENCE",
	"CMS_IDP_GOOGLE_JWKS_URL", "CMS_IDP_GOOGLE_ISSUER", "CMS_IDP_GOOGLE_AUDIENCE",
}

func contextString(a awscdk.App, key string) string {
	v := a.Node().TryGetContext(jsii.String(key))
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}
