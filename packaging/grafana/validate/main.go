// Validates Grafana dashboards against Grafana's dashboard schema (the v1 `dashboard` kind)
// as compiled into the Grafana Foundation SDK's Go types: strict decoding (unknown fields,
// wrong types and missing required fields are errors; each panel's options and field
// config against its panel plugin's schema, each query against its data source's) and then
// the schema's constraints (Validate).
//
//	go run . FILE...
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: validate FILE...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err == nil {
			var d dashboard.Dashboard
			err = orNil(d.UnmarshalJSONStrict(raw))
			if err == nil {
				err = orNil(d.Validate())
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: valid\n", path)
	}
	if failed {
		os.Exit(1)
	}
}

// orNil: the SDK returns its error list even when it is empty (a non-nil interface).
func orNil(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}
