package tablestore

import (
	"sort"

	"github.com/channelbilling/cms/shared/outbox"
)

func sortEvents(es []outbox.Event) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Time.Before(es[j].Time) })
}
