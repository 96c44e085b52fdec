"""mmjax.cli's pieces that need no process: one-line error text and big_vision's key=value list
after the config file. The whole command line's errors are tested through the CLI in
test_bad_input.py."""

import pytest

from mmjax import cli
from tests.conftest import run_python


def test_gist_puts_a_multiline_message_on_one_line():
  assert cli.gist('Flag --config.seed=x: bad value\n  Traceback ...\nValueError: not an int') == (
      'Flag --config.seed=x: bad value: not an int')
  assert cli.gist('one line') == 'one line'
  assert cli.gist('') == ''


def test_key_value_items_after_the_config_file_become_overrides():
  argv = ['prog', '--config=configs/late_fusion.py:synthetic,seed=3,optimizer.learning_rate=0.1',
          '--workdir=w']
  assert cli.expand_config_arg(argv) == [
      'prog', '--config=configs/late_fusion.py:synthetic', '--config.seed=3',
      '--config.optimizer.learning_rate=0.1', '--workdir=w']
  # Without a variant, and with the file as the next argument.
  assert cli.expand_config_arg(['prog', '--config', 'configs/late_fusion.py:seed=3']) == [
      'prog', '--config=configs/late_fusion.py', '--config.seed=3']
  assert cli.expand_config_arg(['prog', '--config=configs/late_fusion.py']) == [
      'prog', '--config=configs/late_fusion.py']
  # A comma inside brackets or quotes belongs to its value: two multipliers, a regex's {2,3}.
  spec = ("optimizer.lr_multipliers=(('enc.{2,3}', 2.0), ('head', 0.5)),"
          "model.name='a,b',seed=4")
  assert cli.expand_config_arg(['prog', f'--config=configs/late_fusion.py:{spec}']) == [
      'prog', '--config=configs/late_fusion.py',
      "--config.optimizer.lr_multipliers=(('enc.{2,3}', 2.0), ('head', 0.5))",
      "--config.model.name='a,b'", '--config.seed=4']


def test_two_variants_are_one_line_naming_them():
  with pytest.raises(SystemExit, match='one variant at most.*synthetic, avmnist'):
    cli.expand_config_arg(['prog', '--config=configs/late_fusion.py:synthetic,avmnist'])


def test_a_bad_command_line_is_answered_before_jax_is_imported():
  """mmjax.main imports JAX, the data and the trainer only once the flags and the config parse,
  so that a typo is one line in a fraction of a second; its --distributed values are
  mmjax.parallel's, spelled out for that reason."""
  from mmjax import parallel  # pylint: disable=import-outside-toplevel
  code = ("import atexit, runpy, sys\n"
          "from absl import flags\n"
          "modes = lambda: flags.FLAGS['distributed'].parser.enum_values\n"
          "atexit.register(lambda: print('jax' in sys.modules, modes()))\n"
          "sys.argv = ['main', '--config=configs/late_fusion.py', '--workdir=w', '--config.seed=x']\n"
          "runpy.run_module('mmjax.main', run_name='__main__')\n")
  proc = run_python(['-c', code])
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith('mmjax: error: flag --config.seed=x')
  assert proc.stdout.strip() == f'False {list(parallel.DISTRIBUTED_MODES)}', proc.stdout
