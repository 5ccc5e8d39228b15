package ui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/herald-notify/herald/internal/testnode"
)

// The API reference page renders every operation of the served
// /openapi.json, with working links from operations to schemas, under the
// UI's Content-Security-Policy and without a console error.
func TestAPIReferenceShowsEveryOperation(t *testing.T) {
	n := testnode.Start(t, nil)
	res, err := http.Get(n.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("/openapi.json: %v", err)
	}
	want := 0
	for _, item := range doc.Paths {
		for m := range item {
			switch m {
			case "get", "post", "put", "patch", "delete":
				want++
			}
		}
	}

	p := newBrowser(t).newPage("reference", 1280, 800)
	p.do("open the reference", chromedp.Navigate(n.URL+"/ui/api/"))
	p.waitFor("the operations", `document.getElementById('app').dataset.operations !== undefined`)
	if got := eval[string](p, "count", `document.getElementById('app').dataset.operations`); got != strconv.Itoa(want) {
		t.Errorf("the page shows %s operations, /openapi.json has %d", got, want)
	}
	p.do("open the send operation", chromedp.Click(chromedp.CSS(`#op-sendNotification summary`)))
	p.waitFor("its body schema link", `!!document.querySelector('#op-sendNotification a[href="#schema-NotificationInput"]')`)
	if !eval[bool](p, "the linked schema", `!!document.getElementById('schema-NotificationInput') &&
		document.getElementById('schema-NotificationInput').textContent.includes('appNotificationId')`) {
		t.Error("the NotificationInput schema is not shown with its properties")
	}
	p.checkClean()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.logs {
		t.Errorf("console: %s", l)
	}
}
