"""Markdown answers of the kinds models write, for the splitter and panel tests."""

from __future__ import annotations

import random

MIXED = """# Setting up a cache

Caching is **simple** until it isn't. Here is what matters, in order:
1. Decide what to cache.
2. Decide *when* to drop it.

   Stale data is worse than none.
3. Measure.
1. A repeated number still counts on.

- a bullet
- another bullet
  - nested one
+ a new list, another marker

> A quote that goes on
for a lazy line.

| name | kind | size |
|------|:----:|-----:|
| a    | x    | 10   |
| bb   | yy   | 2000 |

---

```python title="demo.py"
def f(x):
    \"\"\"Doc.\"\"\"

    return x + 1
```
Text right after the fence.
~~~~
```
inner fence, shown as code

```
~~~~
## Closing
Last words, with `inline code` and a [link](https://example.com).
"""

TRICKY = """Intro paragraph
that wraps over lines.
Setext heading
==============
Steps:
2. not a list: a paragraph cannot be cut by an ordered item other than 1
3. still the same paragraph

* * *

- item with code:
  ```bash
  make test

  make bench
  ```
- item after the code

    indented code block

    more indented code
Paragraph right after indented code.
<!-- a comment

that spans a blank line -->
Back to text.
1) first
2) second
10) tenth, wider number

####### not a heading (seven hashes)
#also not a heading
# Heading right after text
Text.
````markdown
```python
print("nested")
```
````
Final line without a newline"""


def synthetic(tokens: int, seed: int = 7) -> str:
    """An answer of about `tokens` tokens (4 characters each): prose, lists, code and tables."""
    rng = random.Random(seed)
    words = " ".join(
        (
            "the cache holds values until an eviction policy decides that older entries should go so",
            "memory stays bounded while reads remain fast and writes stay consistent across replicas",
        )
    ).split()

    def sentence(count: int) -> str:
        return " ".join(rng.choice(words) for _ in range(count)).capitalize() + "."

    parts: list[str] = []
    section = 0
    while sum(len(part) for part in parts) < tokens * 4:
        section += 1
        parts.append(f"## Part {section}: {sentence(3)[:-1]}\n")
        parts.append(" ".join(sentence(rng.randint(8, 20)) for _ in range(rng.randint(2, 4))) + "\n")
        parts.append(
            "\n".join(f"{i}. **{sentence(2)[:-1]}**: {sentence(rng.randint(6, 14))}" for i in range(1, 5))
        )
        parts.append("\n".join(f"- {sentence(rng.randint(4, 10))}" for _ in range(3)) + "\n")
        lines = [f"def step_{section}(items):", "    total = 0", "    for item in items:"]
        lines += [f"        total += item * {n}  # {sentence(3)}" for n in range(rng.randint(2, 6))]
        lines += ["    return total"]
        parts.append("```python\n" + "\n".join(lines) + "\n```\n")
        rows = "\n".join(f"| {rng.choice(words)} | {rng.randint(1, 999)} | {sentence(3)} |" for _ in range(4))
        parts.append("| name | count | note |\n|---|---:|---|\n" + rows + "\n")
    return "\n".join(parts)


def chunkings(text: str, count: int, seed: int = 1) -> list[list[str]]:
    """`count` random ways to cut `text` into stream chunks, from single characters to whole lines."""
    rng = random.Random(seed)
    result = []
    for index in range(count):
        biggest = (1, 2, 5, 16, 64)[index % 5]
        chunks, start = [], 0
        while start < len(text):
            size = rng.randint(1, biggest)
            chunks.append(text[start : start + size])
            start += size
        result.append(chunks)
    return result
