// The parts of @kubernetes/client-node rollguard uses, and the one module that imports the library
// (src/kube/config.ts loads it, with src/kube/client.ts, only when a cluster is configured).
//
// The library's entry loads every generated API and model it has, about a thousand modules, whose
// source text V8 keeps in the heap; for rollguard's few classes that is about 40 MB of RSS
// (docs/benchmarks.md, "Footprint"). So `npm run build` replaces this module in dist/ with one file
// bundled from it by esbuild (scripts/bundle-client-node.mjs): the same library code, tree-shaken
// to what these names reach. Under tsx (the tests, `npm run dev`) it is the library itself;
// test/e2e/built-client.test.ts runs the built dist/ against a real control plane.
export { CoreV1Api, CustomObjectsApi, KubeConfig, Observable, PatchStrategy, Watch } from '@kubernetes/client-node';
export type { ConfigurationOptions, ObservableMiddleware, RequestContext, ResponseContext } from '@kubernetes/client-node';
