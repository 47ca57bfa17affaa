// The CONFIG_SNAPSHOTS_KEY the tests sign and check configuration snapshots with
// (src/config-deps/snapshots.ts); production keys are random (the chart generates one).
export const SNAPSHOT_KEY = 'test-snapshot-key-0123456789abcdef-0123456789';
