package config

import "testing"

func TestOperationsSections(t *testing.T) {
	c, err, _ := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Listen != "" || c.Log.Format != "text" || c.Log.Level != "info" {
		t.Errorf("defaults: admin %+v log %+v; want admin off, text, info", c.Admin, c.Log)
	}

	c, err, _ = loadWith(t, nil, "dns:\n", "admin:\n  listen: 127.0.0.1:9580\nlog:\n  format: json\n  level: debug\ndns:\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Listen != "127.0.0.1:9580" || c.Log.Format != "json" || c.Log.Level != "debug" {
		t.Errorf("got admin %+v log %+v", c.Admin, c.Log)
	}

	_, err, _ = loadWith(t, nil, "dns:\n", "admin:\n  listen: nowhere\nlog:\n  format: xml\n  level: loud\ndns:\n")
	onlyProblems(t, err,
		`admin.listen: "nowhere" is not HOST:PORT`,
		`log.format: "xml" is not one of text, json`,
		`log.level: "loud" is not one of debug, info, warn, error`)

	t.Setenv("SEALGATE_LOG_FORMAT", "json")
	c, err, _ = loadWith(t, nil)
	if err != nil || c.Log.Format != "json" {
		t.Errorf("SEALGATE_LOG_FORMAT=json: %v, format %q", err, c.Log.Format)
	}
}
