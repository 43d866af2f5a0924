"""``cnnlab transfer`` (features + SVM study) and ``cnnlab inspect`` (A-Q1..Q4 for any model)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.options import add_model_args, model_options, parse_floats


def _bundle(args, device):
    from cnnlab.models import build_model

    return build_model(**model_options(args), input_size=getattr(args, "input_size", None), device=device)


def _cmd_transfer(args) -> int:
    from cnnlab.runs import Run, resolve_device, seed_everything
    from cnnlab.transfer.study import TransferConfig, run_transfer

    # every argument is checked (TransferConfig validates) before anything is downloaded or written
    Cs = parse_floats(args.C, "--C", per_channel=False) if args.C else None
    cfg = TransferConfig(dataset=args.dataset, arch=args.arch, weights=args.weights,
                         layers=[x for x in (args.layers or "").split(",") if x],
                         combos=[x for x in (args.combos or "").split(",") if x],
                         Cs=Cs or TransferConfig().Cs, cv=args.cv, per_class=args.per_class, pca=not args.no_pca,
                         head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs,
                         scratch_epochs=args.scratch_epochs, batch_size=args.batch_size,
                         input_transform=args.input_transform, data_root=args.data_root, seed=args.seed,
                         tta=args.tta, spatial=args.spatial, precision=args.precision,
                         compile=args.compile)
    seed_everything(args.seed)
    bundle = _bundle(args, resolve_device(args.device))
    cfg = replace(cfg, weights=bundle.weights, mean=bundle.mean, std=bundle.std)
    if args.dry_run:  # tiny and fast: few images, one C, a couple of epochs
        cfg = replace(cfg, per_class=min(cfg.per_class or 4, 4), Cs=cfg.Cs[:1], cv=2, head_epochs=min(cfg.head_epochs, 2),
                      finetune_epochs=min(cfg.finetune_epochs, 1), scratch_epochs=min(cfg.scratch_epochs, 1))
    with Run.create(args.out, "transfer", cfg, args.seed, resume=args.resume) as run:
        res = run_transfer(cfg, bundle, run)
    sel = res["selected"]
    print(f"{'layer':>16} {'C':>8} {'cv_acc':>8} {'test_acc':>8}")
    for r in res["svm_rows"]:
        mark = "  <- chosen by CV" if (r["layer"], r["C"]) == (sel["layer"], sel["C"]) else ""
        print(f"{r['layer']:>16} {r['C']:>8g} {r['cv_acc']:>8.4f} {r['test_acc']:>8.4f}{mark}")
    print(f"selected {sel['layer']} C={sel['C']:g}: test accuracy {sel['test_acc']:.4f} "
          f"({res['n_train']} train, {res['n_test']} test, {res['skipped_files']} files skipped)")
    for k in ("new_head", "finetune", "scratch"):
        if k in res:
            print(f"{k}: test accuracy {res[k]['test_acc']:.4f}")
    print(f"run folder: {args.out}")
    return 0


def _cmd_inspect(args) -> int:
    import torch

    from cnnlab.data.decode import IMG_EXTENSIONS, decode_image
    from cnnlab.runs import Run, resolve_device
    from cnnlab.transfer import figures
    from cnnlab.transfer.inspect import first_conv_maps, last_layer, parameter_table, top_k

    bundle = _bundle(args, resolve_device(args.device))
    with Run.create(args.out, "inspect", vars(args) | {"func": None}, args.seed) as run:
        rows = parameter_table(bundle.model, bundle.input_size, bundle.in_channels)
        run.write_table("parameters", rows)
        ll = last_layer(bundle.model)
        run.log_metrics(total_parameters=rows[-1]["parameters"], last_layer=ll)
        for r in rows:
            print(f"{r['layer']:32s} {r['type']:14s} {r.get('output', ''):>14s} {r['parameters']:>14,}")
        print(f"last layer {ll['layer']}: {ll['type']} with {ll['outputs']} outputs"
              + (f" (classes: {', '.join(bundle.categories[:3])}, …)" if bundle.categories else ""))
        paths: list[tuple[Path, str]] = []  # (file, the name shown: relative to the folder given)
        for item in args.images or []:
            p = Path(item)
            if p.is_dir():
                paths += [(f, f.relative_to(p).as_posix()) for f in sorted(p.rglob("*"))
                          if f.suffix.lower() in IMG_EXTENSIONS]
            elif p.is_file():
                paths.append((p, p.name))
            else:
                raise CnnlabError(f"--images {p}: no such file or folder")
        imgs, names = [], []
        for p, name in paths[:args.max_images]:
            try:
                imgs.append(decode_image(p, bundle.input_size, bundle.in_channels))
                names.append(name)
            except ValueError as e:
                print(f"skipped {p}: {e}")
        if imgs:
            batch = torch.stack(imgs)
            preds = top_k(bundle, batch, args.k)
            for n, pr in zip(names, preds):
                print(f"{n}: " + "; ".join(f"{c.split(',')[0]} {p:.1%}" for c, p in pr))
            run.write_table("top_k", [{"image": n, **{f"top{i + 1}": f"{c} ({p:.3f})" for i, (c, p) in enumerate(pr)}}
                                      for n, pr in zip(names, preds)])
            run.save_figure(figures.topk_figure(batch, preds), "top_k")
            name, maps = first_conv_maps(bundle, batch[0])
            run.save_figure(figures.feature_maps(batch[0], maps[:64], f"maps after {name}"), "first_conv_maps")
    print(f"run folder: {args.out}")
    return 0


def add_commands(sub) -> None:
    from cnnlab.cli import HelpFormatter, add_common

    p = sub.add_parser("transfer", help="Part A: CNN features + LinearSVC (layer and C chosen by CV), PCA, "
                                        "new head / fine-tuning / from scratch",
                       formatter_class=HelpFormatter)
    add_model_args(p, arch="vgg16", weights="DEFAULT", input_size=True)
    p.add_argument("--dataset", default="15scene", help="15scene, digits, mnist-embedded, imagefolder:PATH, …")
    p.add_argument("--layers", default=None, help="comma-separated layer aliases or node names (default: the model's)")
    p.add_argument("--combos", default=None, help="concatenated layers to try too, e.g. relu6+relu7")
    p.add_argument("--C", default=None, help="comma-separated C values (default 1e-3..1e3)")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds on the train split")
    p.add_argument("--per-class", type=int, default=None, help="keep only N labelled training images per class")
    p.add_argument("--no-pca", action="store_true", help="skip the PCA study")
    p.add_argument("--head-epochs", type=int, default=60, help="new final layer on the frozen backbone (0: skip)")
    p.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune the whole network (0: skip)")
    p.add_argument("--scratch-epochs", type=int, default=0, help="same network from scratch (0: skip)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (extraction and training)")
    p.add_argument("--tta", default="none", choices=["none", "flip"], help="flip: average features with the mirror image's")
    p.add_argument("--spatial", default="avg", choices=["avg", "spp", "flatten"],
                   help="feature map -> vector: avg (mean over space), spp (mean over the whole map and over its "
                        "2x2 quadrants, 5x the channels: layout matters for scenes), flatten")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the extractor (frozen weights, conv+ReLU fused): up to 1.1x fp32 throughput "
                        "on CPU after a one-off 4-60 s compilation; for thousands of images. Needs a C++ compiler")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="extraction precision; auto (default): bf16 autocast on CPUs with native bf16 (2-3x faster, "
                        "same SVM accuracy), else fp32; fp32: bit-exact features on every CPU")
    p.add_argument("--input-transform", default=None, help="digits_as_mnist: 8×8 UCI digits into a 28×28 network")
    add_common(p, out_default="runs/transfer")
    p.set_defaults(func=_cmd_transfer, retain_freed_memory=True)

    q = sub.add_parser("inspect", help="A-Q1..Q4: parameter table, last layer, top-k on your images, conv1 maps",
                       formatter_class=HelpFormatter)
    add_model_args(q, arch="vgg16", weights="DEFAULT", input_size=True)
    q.add_argument("--images", nargs="*", help="image files or folders to classify")
    q.add_argument("-k", type=int, default=5, help="top-k")
    q.add_argument("--max-images", type=int, default=16, help="classify at most this many of --images")
    add_common(q, out_default="runs/inspect")
    q.set_defaults(func=_cmd_inspect)
