"""Back end of tools/bench-model: runs Sigilo's release binaries and the
anchors of ../shared/reference in one process tree, one thread each."""
import json, os, statistics, subprocess, sys, tempfile, time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
bin_dir, runs, data_dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "..", "shared", "reference"))
import baselines  # the team's anchor implementations (fastText, scikit-learn)
import numpy as np

def sigilo_train(d):
    args = [f"{bin_dir}/sigilo-eval", "centralized", "--train", f"{d}/train.jsonl", "--test", f"{d}/test.jsonl", "--json",
            "--features", os.environ.get("FEATURES", "hashed")]
    if os.path.exists(f"{d}/val.jsonl"):
        args += ["--val", f"{d}/val.jsonl"]
    reports = []
    model = tempfile.mktemp(suffix=".sgl")
    for i in range(runs):
        out = subprocess.run(args + (["--save-model", model] if i == 0 else []), check=True, capture_output=True, text=True).stdout
        reports.append(json.loads(out))
    r = reports[0]
    r["train_seconds"] = statistics.median(x["train_seconds"] for x in reports)
    return r, model

def sigilo_classify(model, texts):
    lines = ("\n".join(t.replace("\n", " ") for t in texts) + "\n").encode()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([f"{bin_dir}/sigilo-tenant", "classify", "--model", model], input=lines, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    # Subtract start-up (reading and verifying the model) measured on empty input.
    t = time.perf_counter()
    subprocess.run([f"{bin_dir}/sigilo-tenant", "classify", "--model", model], input=b"", check=True, capture_output=True)
    startup = time.perf_counter() - t
    return len(texts) / (statistics.median(times) - startup), len(texts) / statistics.median(times)

def tuned_svc(train, test):
    """LinearSVC, C = 1, hashed 2^16 (the best linear anchor tuned here)."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize
    from sklearn.svm import LinearSVC
    hw = HashingVectorizer(n_features=2 ** 16, ngram_range=(1, 2), alternate_sign=False, norm=None)
    hc = HashingVectorizer(n_features=2 ** 16, analyzer="char_wb", ngram_range=(3, 5), alternate_sign=False, norm=None)
    def feat(texts):
        m = (hw.transform(texts) + hc.transform(texts)).tocsr(); m.data = 1 + np.log(m.data); return normalize(m)
    t = time.perf_counter()
    clf = LinearSVC(C=1.0).fit(feat([r["text"].lower() for r in train]), [r["intent"] for r in train])
    secs = time.perf_counter() - t
    res = baselines.scores(clf.predict(feat([r["text"].lower() for r in test])), [r["intent"] for r in test])
    res["train_seconds"] = secs
    return res

for d in data_dirs:
    name = os.path.basename(os.path.normpath(d))
    train, test = baselines.load(f"{d}/train.jsonl"), baselines.load(f"{d}/test.jsonl")
    sig, model = sigilo_train(d)
    ft = baselines.run_fasttext(train, test, tempfile.mktemp(suffix=".txt"))
    sk = baselines.run_sklearn(train, test)
    svc = tuned_svc(train, test)
    texts = [r["text"] for r in test] * max(1, 100_000 // len(test))
    per_s, per_s_total = sigilo_classify(model, texts)
    print(f"\n## {name}: {len(train)} train, {len(test)} test (Sigilo: median of {runs} runs, release build, one thread)\n")
    print("| system | in-scope accuracy | train seconds | Sigilo time ratio |")
    print("|---|---|---|---|")
    rows = [("Sigilo (hashed 2^16, linear, calibrated)", sig["accuracy_in_scope"], sig["train_seconds"]),
            ("fastText (bigrams, char 3-5, dim 100, 25 epochs)", ft["accuracy_in_scope"], ft["train_seconds"]),
            ("scikit-learn TF-IDF + LinearSVC", sk["accuracy_in_scope"], sk["train_seconds"]),
            ("scikit-learn hashed 2^16 LinearSVC C=1 (tuned)", svc["accuracy_in_scope"], svc["train_seconds"])]
    for label, acc, secs in rows:
        ratio = "" if label.startswith("Sigilo") else f"{sig['train_seconds'] / secs:.2f}x"
        print(f"| {label} | {acc:.4f} | {secs:.2f} | {ratio} |")
    print(f"\nSigilo macro-F1 {sig['macro_f1']:.4f}; hand-off threshold {sig['handoff_threshold']:.3f}"
          + (f"; oos recall {sig['oos_recall']:.3f} ({sig['oos_recall_with_handoff']:.3f} with hand-off)" if "oos_recall" in sig else ""))
    print(f"classify: Sigilo {per_s:,.0f} messages/s after start-up ({per_s_total:,.0f}/s including it, {len(texts):,} messages); "
          f"fastText predict {ft['predictions_per_second']:,.0f}/s (Python binding)")
