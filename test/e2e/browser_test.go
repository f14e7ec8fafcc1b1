package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium; the test fails, not skips, without it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run 'apt-get install -y chromium' (make test does it as root)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI has no user-namespace sandbox
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	// The bound goes on the browser's parent: it ends the browser itself.
	bounded, cancelBound := context.WithTimeout(context.Background(), 60*time.Second)
	alloc, cancelAlloc := chromedp.NewExecAllocator(bounded, opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc(); cancelBound() })
	return ctx
}

func TestPageInChromium(t *testing.T) {
	s := startStack(t)
	for _, js := range []bool{true, false} {
		name := map[bool]string{true: "with JavaScript", false: "without JavaScript"}[js]
		t.Run(name, func(t *testing.T) {
			ctx := browser(t)
			err := chromedp.Do(ctx,
				chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
					_, err := cdp.Call(ctx, target, emulation.SetScriptExecutionDisabled,
						emulation.SetScriptExecutionDisabledParams{Value: !js})
					return err
				}),
				chromedp.Navigate(s.Ports.URL()),
				chromedp.WaitVisible(chromedp.ID("name")),
				chromedp.SendKeys(chromedp.ID("name"), "Chromium"),
				chromedp.Submit(chromedp.ID("name")),
				chromedp.WaitVisible(chromedp.ID("greeting")),
			)
			if err != nil {
				t.Fatalf("driving the page: %v", err)
			}
			greeting, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("greeting")))
			if err != nil {
				t.Fatalf("reading the greeting: %v", err)
			}
			if greeting != "Hello Chromium" {
				t.Fatalf("the page shows %q, want %q", greeting, "Hello Chromium")
			}
		})
	}
}
