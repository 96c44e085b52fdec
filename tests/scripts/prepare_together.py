"""Prepares a dataset into a shared data dir once two processes are both ready to.

  python tests/scripts/prepare_together.py NAME DATA_DIR READY_DIR ME OTHER

Creates READY_DIR/ME, waits for READY_DIR/OTHER, then calls datasets.prepare(NAME,
DATA_DIR), printing 'built' if this process ran the build itself.
"""

import os
import sys
import time

from mmjax.data import datasets


def main(name, data_dir, ready_dir, me, other):
  builder_class = datasets.builders()[name.partition('/')[0]]  # pylint: disable=protected-access
  build = builder_class.download_and_prepare

  def counted(self, *args, **kwargs):
    print('built', flush=True)
    return build(self, *args, **kwargs)

  builder_class.download_and_prepare = counted
  open(os.path.join(ready_dir, me), 'w', encoding='utf-8').close()
  deadline = time.time() + 120
  while not os.path.exists(os.path.join(ready_dir, other)):
    if time.time() > deadline:
      sys.exit(f'{other} never got ready')
    time.sleep(0.01)
  builder = datasets.prepare(name, data_dir)
  print('examples', builder.info.splits['train'].num_examples, flush=True)


if __name__ == '__main__':
  main(*sys.argv[1:])
