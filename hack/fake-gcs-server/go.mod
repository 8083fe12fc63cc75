// Wrapper module that builds the real GCS emulator (github.com/fsouza/fake-gcs-server) for
// the importer's GCS tests (hack/build-fake-gcs-server): a test peer, not product.
module github.com/cdi-py/hack/fake-gcs-server

go 1.26

require github.com/fsouza/fake-gcs-server v1.56.1
