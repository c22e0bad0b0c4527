// tests/ops/validate.mjs: validates Kubernetes objects against their
// schemas (kubernetes-models: the Kubernetes OpenAPI schemas; KEDA's and
// the Prometheus Operator's from their CRDs). Reads a JSON array of
// objects on stdin (tests/http/test_ops.py converts the YAML); prints one
// line per object, "ok KIND NAME" or "FAIL KIND NAME: why", and exits 1 if
// any failed or had no schema. Packages pinned by package-lock.json
// (npm ci).
import { readFileSync } from "node:fs";
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as monitoring from
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const groups = {
    "v1": core,
    "apps/v1": apps,
    "keda.sh/v1alpha1": keda,
    "monitoring.coreos.com/v1": monitoring,
};

const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;

for (const doc of docs) {
    const name = `${doc.kind} ${doc.metadata && doc.metadata.name}`;
    const group = groups[doc.apiVersion];
    const Model = group && group[doc.kind];

    if (!Model) {
        console.log(`FAIL ${name}: no schema for ${doc.apiVersion}`);
        failed++;
        continue;
    }

    try {
        new Model(doc).validate();
        console.log(`ok ${name}`);
    } catch (e) {
        console.log(`FAIL ${name}: ${e.message}`);
        failed++;
    }
}

process.exit(failed ? 1 : 0);
