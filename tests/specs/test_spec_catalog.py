"""Names a spec may use (providers, accounts, regions) and files under the spec path that are not specs."""

from __future__ import annotations

from reconciler.core import model
from specs import catalog, loader
from tests.specs.spec_helpers import Tree, lines_of, minimal

CATALOG = catalog.Catalog(frozenset({"aws", "gcp", "local"}),
                          {"local": {"default": ()}, "aws": {"prod": ("us-east-1",)}}, source="config.yaml")


def load(tree: Tree, cat: catalog.Catalog | None = CATALOG,
         cache: loader.SpecCache | None = None) -> model.DesiredState:
    return loader.load_specs(tree.spec_files(), spec_path="apps", cache=cache, catalog=cat)


def test_an_unknown_provider_names_its_line_and_the_installed_ones() -> None:
    state = load(Tree({"shop.yaml": minimal().replace("provider: local", "provider: nosuchcloud")}))
    assert lines_of(state) == ["apps/shop.yaml:4: clusters[0].provider: unknown provider 'nosuchcloud' "
                               "(installed: aws, gcp, local)"]
    assert state.applications == {} and state.broken_files == {"apps/shop.yaml"}


def test_accounts_and_regions_are_checked_only_when_a_config_is_known() -> None:
    spec = minimal().replace("provider: local", "provider: aws").replace("account: default", "account: prod") \
        .replace("[local-1]", "[us-east-1, eu-west-1]")
    assert lines_of(load(Tree({"shop.yaml": spec}))) == [
        "apps/shop.yaml:6: clusters[0].regions[1]: region 'eu-west-1' is not allowed by account aws/prod "
        "(allowed: us-east-1; providers.aws.accounts.prod.regions)"]
    typo = minimal().replace("account: default", "account: dflt")
    assert lines_of(load(Tree({"shop.yaml": typo}))) == [
        "apps/shop.yaml:5: clusters[0].account: account 'dflt' is not configured for provider local "
        "(configured: default; providers.local.accounts in config.yaml)"]
    providers_only = catalog.Catalog(frozenset({"aws", "local"}))
    assert load(Tree({"a.yaml": spec, "b.yaml": typo.replace("shop", "cart")}), providers_only).problems == ()


def test_the_catalog_check_runs_on_cached_results_too() -> None:
    tree = Tree({"shop.yaml": minimal().replace("account: default", "account: dflt")})
    cache = loader.SpecCache()
    assert load(tree, None, cache).problems == ()
    assert load(tree, CATALOG, cache).problems and cache.parses == 1, "the cache keeps no catalog answer"


def test_spec_suffixes_ignore_case_and_other_files_are_noticed_with_what_they_may_define() -> None:
    tree = Tree({"shop.YAML": minimal("shop"), "cart.Yml": minimal("cart"), "blog.yaml.bak": minimal("blog"),
                 "README.md": "# specs\n", "tmpl.j2": "application: {{ values.name }}\n"})
    state = load(tree)
    assert sorted(state.applications) == ["cart", "shop"] and state.problems == ()
    assert dict(state.unread_files) == {"apps/README.md": (), "apps/blog.yaml.bak": ("blog",),
                                        "apps/tmpl.j2": ("*",)}
    assert [str(n) for n in state.notices] == [
        "apps/README.md:1: (file): not read: only .yaml and .yml files are specs",
        "apps/blog.yaml.bak:1: (file): not read: only .yaml and .yml files are specs; pruning is held for blog "
        "while it is here",
        "apps/tmpl.j2:1: (file): not read: only .yaml and .yml files are specs; pruning is held for every "
        "application while it is here"]
    reads = sum(tree.reads.values())
    cache = loader.SpecCache()
    load(tree, cache=cache)
    load(tree, cache=cache)
    assert sum(tree.reads.values()) - reads == 5, "each file is read once per blob, then cached"


def test_may_define_reads_application_lines_and_spec_like_names() -> None:
    assert catalog.may_define("apps/x.txt", b"owner: a\napplication: 'shop'  # the shop\n") == ("shop",)
    assert catalog.may_define("apps/blog.yml.orig", b"") == ("blog",)
    assert catalog.may_define("apps/notes.md", b"nothing here") == ()
