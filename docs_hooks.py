"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks``).

- The home page is ``README.md`` itself (one text for GitHub and the site): its links into
  ``docs/`` are made relative to the site.
- Pages named in the nav that another part of the project writes (``OWNED_ELSEWHERE``) get a
  short placeholder while they are absent from the checkout, so the site builds strictly in any
  order of merges; once the page exists it is used as is and nothing is generated.
- A link from a page to a repository file outside ``docs/`` (``../README.md``, ``../src/...``)
  has no target on the site: the README becomes the home page, any other file its path in code
  font. Everything else is validated by ``mkdocs build --strict``.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

OWNED_ELSEWHERE = {
    "serving.md": ("Serving (`nextok-serve`)", "serving"),
    "fast-decoding.md": ("Fast decoding", "fast-decoding"),
}
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)#\s]+)(#[^)\s]*)?\)")


def home_page(readme: str) -> str:
    """The README with its ``docs/...`` links and images pointing into the site."""
    return re.sub(r"\]\(docs/", "](", readme)


def on_files(files: Files, config) -> Files:
    readme = Path(config.config_file_path).parent / "README.md"
    files.append(File.generated(config, "index.md", content=home_page(readme.read_text())))
    for name, (title, slug) in OWNED_ELSEWHERE.items():
        if files.get_file_from_path(name) is None:
            text = (
                f"# {title}\n\nThis page is not in this checkout yet. The [home page](index.md) "
                f"has the short version; the full text lives in `docs/{slug}.md`.\n"
            )
            files.append(File.generated(config, name, content=text))
    return files


def outside_links(markdown: str, page_uri: str) -> str:
    """Links of the page at ``page_uri`` (relative to ``docs/``) whose target lies outside
    ``docs/``: the README becomes the home page, any other file its path in code font."""
    folder = posixpath.dirname(page_uri)

    def fix(match: re.Match) -> str:
        bang, text, target = match.group(1), match.group(2), match.group(3)
        if "://" in target or target.startswith(("/", "mailto:")):
            return match.group(0)
        path = posixpath.normpath(posixpath.join(folder, target))
        if not path.startswith("../"):
            return match.group(0)  # a page or image of the site: mkdocs checks it
        repo_path = path.removeprefix("../")
        if repo_path == "README.md" and not bang:
            return f"[{text}]({posixpath.relpath('index.md', folder or '.')})"
        return f"{text} (`{repo_path}`)"

    return _LINK.sub(fix, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return outside_links(markdown, page.file.src_uri)
