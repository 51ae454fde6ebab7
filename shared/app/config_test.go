package app_test

import (
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/app"
)

func TestConfigEventBus(t *testing.T) {
	if got := app.Defaults().EventBus; got != "cms-events" {
		t.Fatalf("default bus %q", got)
	}
	t.Run("FromEnv", func(t *testing.T) {
		t.Setenv("CMS_EVENT_BUS", "cms-prod-events")
		c, err := app.FromEnv()
		if err != nil || c.EventBus != "cms-prod-events" {
			t.Fatalf("bus %q, err %v", c.EventBus, err)
		}
	})
	for name, tc := range map[string]struct {
		bus string
		ok  bool
	}{
		"OK":           {"cms-events", true},
		"OKDefault":    {"default", true},
		"OKPartner":    {"aws.partner/example.com/123/x", true},
		"OKArn":        {"arn:aws:events:eu-west-1:123456789012:event-bus/cms-events", true},
		"ErrEmpty":     {"", false},
		"ErrSpace":     {"cms events", false},
		"ErrTooLong":   {strings.Repeat("a", 257), false},
		"ErrArnNoBus":  {"arn:aws:events:eu-west-1:123456789012:rule/x", false},
		"ErrArnNoName": {"arn:aws:events:eu-west-1:123456789012:event-bus/", false},
	} {
		t.Run(name, func(t *testing.T) {
			c := app.Defaults()
			c.EventBus = tc.bus
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%q) = %v", tc.bus, err)
			}
			if err != nil && !strings.Contains(err.Error(), "CMS_EVENT_BUS") {
				t.Fatalf("error %q does not name the variable", err)
			}
		})
	}
}
