package keys_test

import (
	"fmt"
	"time"

	"sealgate/keys"
)

// A rotation signs with its new key only once switched; until then the old key signs.
func ExampleRotations_ApplyRotations() {
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	configured := []keys.ActiveKey{{Selector: "rsa2026", KeyFile: "/etc/sealgate/keys/rsa2026.key"}}
	sel := keys.DefaultSelector(keys.FamilyRSA, day, []string{"rsa2026"})

	rs := &keys.Rotations{}
	_ = rs.Start(keys.Rotation{Domain: "example.com", Family: keys.FamilyRSA, Alg: keys.RSA2048,
		Old: "rsa2026", New: sel, NewKeyFile: "/var/lib/sealgate/keys/" + sel + ".example.com.key"}, day)
	r := rs.Pending("example.com", keys.FamilyRSA)
	fmt.Println(r.State(day), rs.ApplyRotations("example.com", configured)[0].Selector)

	r.Switch(day, 7*24*time.Hour, false) // what a check does once the record is published
	fmt.Println(r.State(day), rs.ApplyRotations("example.com", configured)[0].Selector)
	fmt.Println(r.State(day.Add(8*24*time.Hour)), "of", keys.RecordName(r.Old, string(r.Domain)))
	// Output:
	// pending-publication rsa2026
	// retiring rsa20261207
	// remove-record of rsa2026._domainkey.example.com
}
