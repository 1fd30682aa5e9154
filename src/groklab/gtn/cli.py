"""``groklab gtn {train,eval,nas,sample,audit,env}``: thin — parse, build a GTNConfig, call groklab.gtn."""
from __future__ import annotations

from pathlib import Path

from groklab.config import ConfigError


def cmd_train(args) -> int:
    from groklab.gtn import run as gtn_run
    from groklab.gtn.config import resolve
    if args.resume:
        if args.recipe or args.config or args.set:
            raise ConfigError("--resume continues a run with its own config.json; drop --recipe/--config/--set")
        if args.out:
            raise ConfigError(f"--resume {args.resume!r} continues in its own directory; drop --out {args.out!r}")
        out = gtn_run.resume(args.resume, progress=not args.quiet, evaluate=not args.no_eval)
    else:
        cfg = resolve(args.config, args.set, recipe=args.recipe)
        out = gtn_run.train(cfg, args.out, progress=not args.quiet, evaluate=not args.no_eval)
    return _print_summary(out)


def _print_summary(out: Path) -> int:
    from groklab.runs.rundir import read_run_json
    s = read_run_json(out / "summary.json")
    line = f"{s['status']}: {s['steps_done']} outer steps in {s['wall_seconds']:.1f} s"
    ev = s.get("eval")
    if ev:
        line += (f" · T = {ev['steps']}: GTN {ev['gtn_mean']:.3f} ± {ev['gtn_std']:.3f}, "
                 f"real {ev['real_mean']:.3f} ± {ev['real_std']:.3f} (lr {ev['best_lr']:g}, "
                 f"{ev['learners']} learners)")
        if ev.get("gtn_raw_mean") is not None:
            line += f" · un-averaged teacher {ev['gtn_raw_mean']:.3f} ± {ev['gtn_raw_std']:.3f}"
    print(line)
    return _finish(out, s)


def _finish(out, s: dict) -> int:
    """The last lines of a gtn run command (train, env): where its report is, its message, and
    its exit code by status (an interrupted run 130, a diverged one 3)."""
    print(f"report: {out / 'report.html'}")
    if s.get("message"):
        print(s["message"])
    return {"completed": 0, "interrupted": 130, "nan": 3}.get(s["status"], 1)


def cmd_eval(args) -> int:
    from groklab.gtn.run import evaluate_run
    evaluate_run(args.dir, learners=args.learners)
    return _print_summary(Path(args.dir))


def cmd_nas(args) -> int:
    from groklab.gtn.nas import NASConfig, run_nas
    ncfg = NASConfig(archs=args.archs, full_steps=args.full_steps, seeds=args.seeds,
                     proxy_learners=args.proxy_learners, top_k=args.top_k, seed=args.seed,
                     kinds=tuple(args.kinds.split(",")))
    out = run_nas(args.gtn, args.out, ncfg, progress=not args.quiet)
    from groklab.runs.rundir import read_json
    r = read_json(out / "nas.json")
    one_lr = r["proxies"]["real_one_lr"]["lr"]
    for name, label in (("gtn", "gtn"), ("real", "real"), ("real_one_lr", f"real, lr {one_lr:g}")):
        p = r["proxies"][name]
        print(f"{label:>4} proxy ({p['steps']} steps): Spearman {p['spearman']:+.3f} "
              f"(top half {p['spearman_top_half']:+.3f}) · top-{r['top_k']} overlap "
              f"{p['top_k_overlap']:.2f} · {p['seconds']:.1f} s")
    print(f"full training ({r['full_steps']} steps): {r['full_seconds']:.1f} s")
    print(f"report: {out / 'report.html'}")
    return 0


def cmd_sample(args) -> int:
    from groklab.gtn.sample import sample_run
    a = sample_run(args.dir, args.out_file, n=args.n, seed=args.seed)
    print(f"{len(a['y'])} examples ({a['data']}, {a['curriculum']} curriculum, {a['unroll'].max() + 1} "
          f"unroll(s) of {len(a['lr'])} steps × {a['batch']}) → {args.out_file}")
    return 0


def cmd_audit(args) -> int:
    from groklab.gtn.audit import audit_run
    a = audit_run(args.dir, learners=args.learners)
    nn = a["nearest"]
    fmt = lambda v, p=3: "–" if v is None else f"{v:.{p}f}"  # noqa: E731
    print(f"taught {fmt(a['acc_gtn'])} vs real {fmt(a['acc_real'])} ({a['learners']} learners) · nearest real "
          f"neighbour {fmt(nn['gen_median'])} vs real–real {fmt(nn['real_median'])} (ratio {fmt(nn['ratio'], 2)}) "
          f"· diversity ratio {fmt(a['diversity_ratio'], 2)}")
    print("class  asked  mass   taught  real   nn-ratio  diversity-ratio")
    for r in a["classes"]:
        print(f"{r['class']:>5}  {r['asked']:>5}  {fmt(r['mass'])}  {fmt(r['acc_gtn'])}   {fmt(r['acc_real'])}  "
              f"{fmt(r['nn_ratio'], 2):>8}  {fmt(r['diversity_ratio'], 2):>15}  {r['why']}")
    print(f"neglected: {', '.join(map(str, a['neglected'])) or 'none'}")
    print(f"audit: {Path(args.dir) / 'audit.json'}")
    return 0


def cmd_env(args) -> int:
    from groklab.gtn import envrun
    from groklab.gtn.envconfig import resolve
    if args.resume:
        if args.recipe or args.config:
            raise ConfigError("--resume continues a run with its own config.json; drop --recipe/--config")
        if args.out:
            raise ConfigError(f"--resume {args.resume!r} continues in its own directory; drop --out {args.out!r}")
        out = envrun.resume(args.resume, progress=not args.quiet, evaluate=not args.no_eval, overrides=args.set)
    else:
        cfg = resolve(args.config, args.set, recipe=args.recipe)
        out = envrun.train(cfg, args.out, progress=not args.quiet, evaluate=not args.no_eval)
    from groklab.runs.rundir import read_run_json
    s = read_run_json(out / "summary.json")
    print(f"{s['status']}: {s['generations_done']} generations ({s['target']}, {s['env']}) in "
          f"{s['wall_seconds']:.1f} s, {s['real_steps_meta']:,} real steps spent")
    for kind, h in (s.get("eval") or {}).items():
        a, b = h[s["target"]], h.get("real")
        line = (f"{kind}: {s['target'].upper()} {a['solved']}/{a['of']} solved (median {a['median_steps']} steps, "
                f"best {a['best_mean_return']}, final {a['final_mean_return']})")
        if b:
            line += (f" · real {b['solved']}/{b['of']} solved (median {b['median_steps']} steps, best "
                     f"{b['best_mean_return']}, final {b['final_mean_return']}) · steps ratio {h['steps_ratio']}")
        print(line)
    return _finish(out, s)


def register(subparsers) -> None:
    p = subparsers.add_parser("gtn", help="Generative Teaching Networks: meta-train, evaluate, rank architectures")
    sub = p.add_subparsers(dest="gtn_command", metavar="GTN_COMMAND", required=True)
    t = sub.add_parser("train", help="meta-train a generator and write a run directory with its report")
    from groklab.gtn.config import RECIPES
    t.add_argument("--recipe", help=f"a named starting point: {', '.join(RECIPES)}")
    t.add_argument("--config", help="a TOML file of settings ([data], [generator], [learner], [inner], [meta], [eval])")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one dotted setting, e.g. --set inner.steps=32 (repeatable)")
    t.add_argument("--out", help="run directory to create (default runs/gtn-<data>-<time>)")
    t.add_argument("--resume", metavar="DIR", help="continue the meta-training in DIR from its last checkpoint")
    t.add_argument("--no-eval", action="store_true", help="skip the evaluation protocol at the end")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="fresh learners on GTN data vs real data; figures and report")
    e.add_argument("dir", help="a GTN run directory")
    e.add_argument("--learners", type=int, help="fresh learners per protocol (default: the run's eval.learners)")
    e.set_defaults(func=cmd_eval)
    sp = sub.add_parser("sample", help="write the teacher's data (inputs, targets, curriculum order) to a new .npz")
    sp.add_argument("dir", help="a GTN run directory")
    sp.add_argument("--out", dest="out_file", required=True, metavar="FILE",
                    help="the .npz file to create (never an existing one)")
    sp.add_argument("--n", type=int, help="examples (default T·B, one learner's data; at most 1,000,000 and 1 GiB)")
    sp.add_argument("--seed", type=int, help="unroll k's plan from seed + k (default eval.seed + 7919: "
                                             "unroll k is evaluation learner k's data)")
    sp.set_defaults(func=cmd_sample)
    au = sub.add_parser("audit", help="labels, per-class accuracy, copying and diversity of the teacher's data")
    au.add_argument("dir", help="a GTN run directory")
    au.add_argument("--learners", type=int, help="fresh learners (default: the run's eval.learners)")
    au.set_defaults(func=cmd_audit)
    from groklab.gtn.envconfig import RECIPES as ENV_RECIPES
    v = sub.add_parser("env", help="meta-learn a synthetic environment or reward network for an RL task "
                                   "(needs the rl extra: gymnasium)")
    v.add_argument("--recipe", help=f"a named starting point: {', '.join(ENV_RECIPES)}")
    v.add_argument("--config", help="a TOML file of settings ([env], [agent], [se], [rn], [meta], [eval])")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one dotted setting, e.g. --set meta.generations=50 (repeatable)")
    v.add_argument("--out", help="run directory to create (default runs/gtn-env-<env>-<target>-<time>)")
    v.add_argument("--resume", metavar="DIR", help="continue the meta-training in DIR from its last checkpoint "
                                                   "(with --set eval.KEY=VALUE: then evaluate with those settings)")
    v.add_argument("--no-eval", action="store_true", help="skip the evaluation protocol at the end")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_env)
    n = sub.add_parser("nas", help="rank sampled architectures by GTN data, by real data, by full training")
    n.add_argument("--gtn", required=True, metavar="DIR", help="a GTN run directory (its data and teacher)")
    n.add_argument("--out", help="new directory for nas.json and the report, never an existing one "
                                 "(default DIR/nas, or DIR/nas-1, ... when taken)")
    n.add_argument("--archs", type=int, default=32, help="architectures sampled (default 32)")
    n.add_argument("--full-steps", type=int, default=2000, help="real-data steps of full training (default 2000)")
    n.add_argument("--seeds", type=int, default=2, help="full-training runs per architecture (default 2)")
    n.add_argument("--proxy-learners", type=int,
                   help="learners per architecture and proxy (default: --seeds); proxies are cheap, "
                        "more learners lower their noise")
    n.add_argument("--top-k", type=int, help="top-k overlap size (default archs // 4)")
    n.add_argument("--kinds", default="mlp,cnn", help="learner kinds to sample (default mlp,cnn)")
    n.add_argument("--seed", type=int, default=0, help="seed of the architecture sample")
    n.add_argument("--quiet", action="store_true", help="no progress bar")
    n.set_defaults(func=cmd_nas)
