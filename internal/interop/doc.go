// Package interop holds sealgate's interoperability tests: over a corpus of awkward messages
// (testdata/corpus), DKIM signatures and ARC seals made by sealgate are verified by dkimpy and
// Mail::DKIM, and those made by dkimpy are verified by sealgate and compared with dkimpy's own
// verdict. The package has no code of its own; see interop_test.go.
package interop
