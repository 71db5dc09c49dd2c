"""Every error path of ``list``, ``info``, ``attention``, ``bench`` and the top level: one ``timm-sesk: error:`` line
naming the fix, the exit status, no traceback, and nothing written; and Ctrl-C while the command starts."""
import configparser
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from timm_sesk.cli import main
from timm_sesk.cli.errors import report
from timm_sesk.cli.text import terminal_text
from timm_sesk.data import ImageNotFoundError
from timm_sesk.weights import CheckpointReadError

REPO = Path(__file__).resolve().parents[1]
PREFIX = 'timm-sesk: error: '

# (argv, exit status, what the line says). Placeholders: {image} a photo, {bad} a file that is no image, {missing}
# no file, {folder} an existing folder, {file} an existing file; outputs go to the empty working folder.
ERROR_PATHS = {
    # top level: argparse's usage errors
    'unknown command': (['bogus'], 2, "argument COMMAND: invalid choice: 'bogus' (choose from 'list'"),
    'unknown option': (['--bogus'], 2, 'unrecognized arguments: --bogus (`timm-sesk --help` shows the usage)'),
    # list
    'list: nothing matches': (['list', 'nothing*'], 1, "no model matches 'nothing*'; all models: timm-sesk list"),
    'list --json: nothing matches': (['list', '--json', 'nothing*'], 1, "no model matches 'nothing*'"),
    'list: unknown option': (['list', '--bogus'], 2, 'unrecognized arguments: --bogus (`timm-sesk list --help`'),
    'list: two filters': (['list', 'sk_*', 'se_*'], 2, 'unrecognized arguments: se_*'),
    # info
    'info: no model': (['info'], 2, 'name the model with -m/--model'),
    'info: two models': (['info', 'sk_resnet18', '-m', 'sk_resnet34'], 2, "two models given, 'sk_resnet18' and"),
    'info: misspelt': (['info', 'se_resnet5'], 2, "unknown model 'se_resnet5'; did you mean se_resnet50"),
    'info: timm name': (['info', '--json', 'skresnext50_32x4d'], 2,
                        "did you mean sk_resnet50 (our name for timm's skresnext50_32x4d)?"),
    'info: tag of another architecture': (['info', 'se_resnet18.in1k'], 2,
                                          "se_resnet18 has no pretrained tag 'in1k'; its tags: graft_resnet18_a1_in1k "
                                          '(`timm-sesk info se_resnet18`); did you mean se_resnet18_orig.in1k'),
    'info: Hub id': (['info', '-m', 'hf-hub:me/model'], 2, "info describes the zoo's models by name"),
    # attention: options, checked before any work
    'attention: no model': (['attention', '{image}'], 2, 'the following arguments are required: --model/-m'),
    'attention: no image': (['attention', '-m', 'sk_resnet18'], 2, 'the following arguments are required: IMAGE'),
    'attention: unknown model': (['attention', '-m', 'sk_resnet81', '{image}'], 2, 'did you mean sk_resnet18'),
    'attention: bad scales': (['attention', '-m', 'sk_resnet18', '--scales', '128,big', '{image}'], 2,
                              '--scales must be positive integers separated by commas'),
    'attention: zero scale': (['attention', '-m', 'sk_resnet18', '--scales', '0', '{image}'], 2,
                              '--scales must be positive integers'),
    'attention: bad figsize': (['attention', '-m', 'sk_resnet18', '--figsize', '10', '{image}'], 2,
                               '--figsize is WIDTH,HEIGHT in inches'),
    'attention: bad dpi': (['attention', '-m', 'sk_resnet18', '--dpi', 'x', '{image}'], 2,
                           "argument --dpi: invalid int value: 'x' (`timm-sesk attention --help`"),
    'attention: zero dpi': (['attention', '-m', 'sk_resnet18', '--dpi', '0', '{image}'], 2,
                            '--dpi must be at least 1, got 0'),
    'attention: figure too large': (['attention', '-m', 'sk_resnet18', '--dpi', '1000', '--figsize', '100,6',
                                     '{image}'], 2, 'over 65535 px a side'),
    'attention: --out a folder': (['attention', '-m', 'sk_resnet18', '--out', '{folder}', '{image}'], 2,
                                  '--out {folder} is a folder; name a file to write'),
    'attention: --out below a file': (['attention', '-m', 'sk_resnet18', '--out', '{file}/a.png', '{image}'], 2,
                                      '{file} is a file, not a folder'),
    'attention: --out of no format': (['attention', '-m', 'sk_resnet18', '--out', 'plot.bogus', '{image}'], 2,
                                      '--out plot.bogus: matplotlib writes '),
    'attention: --json a folder': (['attention', '-m', 'sk_resnet18', '--json', '{folder}', '{image}'], 2,
                                   '--json {folder} is a folder'),
    'attention: missing image': (['attention', '-m', 'sk_resnet18', '{image}', '{missing}'], 2,
                                 'no such image file: {missing}'),
    'attention: not an image': (['attention', '-m', 'sk_resnet18', '{bad}'], 1, 'cannot read image {bad}'),
    'attention: no matplotlib': (['attention', '-m', 'sk_resnet18', '{image}'], 1,
                                 'the attention plot needs matplotlib, which is not installed: pip install ".[plot]"'),
    'attention: missing checkpoint': (['attention', '-m', 'sk_resnet18', '--checkpoint', '{missing}', '{image}'],
                                      2, 'no such checkpoint file'),
    # attention: after building the model, before running it
    'attention: below the input minimum': (['attention', '-m', 'se_resnet50_orig', '--no-pretrained', '--scales',
                                            '4,224', '{image}'], 2, 'takes inputs of at least 5x5 px'),
    'attention: no units': (['attention', '-m', 'se_resnet18', '--no-pretrained', '--model-kwarg',
                             'se_position=none', '{image}'], 1, 'se_resnet18 has no SE or SK unit to show'),
    'attention: unknown device': (['attention', '-m', 'sk_resnet18', '--no-pretrained', '--device', 'nope',
                                   '{image}'], 2, "cannot use device 'nope'"),
    # bench
    'bench: bad integer': (['bench', '--batch', 'x'], 2, "argument --batch: invalid int value: 'x'"),
    'bench: bad layout': (['bench', '--layout', 'nhwc'], 2, "argument --layout: invalid choice: 'nhwc'"),
    'bench: unknown model': (['bench', '--model', 'nope'], 2, "unknown model 'nope'"),
    'bench: timm name': (['bench', '--model', 'legacy_seresnet18'], 2, 'did you mean se_resnet18_orig'),
    'bench: tag': (['bench', '--model', 'sk_resnet50.ra_in1k'], 2, 'pass --model sk_resnet50, not'),
    'bench: Hub id': (['bench', '--model', 'hf-hub:me/model'], 2, "bench times the zoo's architectures"),
    'bench: zero threads': (['bench', '--threads', '0'], 2, '--threads must be at least 1, got 0'),
    'bench: zero runs': (['bench', '--runs', '0'], 2, '--runs must be at least 1, got 0'),
    'bench: negative warmup': (['bench', '--warmup', '-1'], 2, '--warmup must be at least 0, got -1'),
    'bench: below the input minimum': (['bench', '--model', 'se_resnet50_orig', '--size', '4'], 2,
                                       '--size must be at least 5, got 4'),
    'bench: SK training batch of one': (['bench', '--model', 'sk_resnet18', '--train', '--train-batch', '1'], 2,
                                        '--train-batch must be at least 2, got 1'),
    'bench: unknown device': (['bench', '--device', 'nope'], 2, "cannot use device 'nope'"),
}
# Run through a real `python -m timm_sesk` as well: one per command, and the traceback of issue 12.
IN_SUBPROCESS = ['unknown command', 'info: timm name', 'attention: below the input minimum', 'bench: tag']


@pytest.fixture
def places(tmp_path, monkeypatch):
    """The placeholders' paths, and an empty working folder as the current directory."""
    inputs = tmp_path / 'inputs'
    inputs.mkdir()
    Image.new('RGB', (64, 48), (200, 120, 40)).save(inputs / 'photo.jpg')
    (inputs / 'bad.jpg').write_text('not an image')
    (inputs / 'folder').mkdir()
    (inputs / 'file.txt').write_text('a file')
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    return dict(image=inputs / 'photo.jpg', bad=inputs / 'bad.jpg', missing=inputs / 'missing.jpg',
                folder=inputs / 'folder', file=inputs / 'file.txt')


def _files(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob('*')}


def _expand(row, places):
    argv, code, message = row
    return [a.format(**places) for a in argv], code, message.format(**places)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(PREFIX), stderr
    return lines[0]


@pytest.mark.parametrize('case', list(ERROR_PATHS))
def test_error_is_one_line_naming_the_fix(case, places, tmp_path, capsys, monkeypatch):
    argv, code, message = _expand(ERROR_PATHS[case], places)
    if case == 'attention: no matplotlib':
        monkeypatch.setitem(sys.modules, 'matplotlib', None)  # what `import matplotlib` meets when it is absent
    before = _files(tmp_path)
    assert main(argv) == code  # an exception escaping main would be a traceback
    captured = capsys.readouterr()
    assert captured.out == ''
    assert message in _one_line(captured.err)
    assert _files(tmp_path) == before  # nothing written, nothing removed


def test_errors_through_the_real_command_print_no_traceback(places):
    cases = {case: _expand(ERROR_PATHS[case], places) for case in IN_SUBPROCESS}
    env = dict(os.environ, OMP_NUM_THREADS='1')
    running = {case: subprocess.Popen([sys.executable, '-m', 'timm_sesk', *argv], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env)
               for case, (argv, _, _) in cases.items()}
    for case, process in running.items():
        out, err = process.communicate(timeout=300)
        _, code, message = cases[case]
        assert 'Traceback' not in err and process.returncode == code, (case, err)
        assert out == '' and message in _one_line(err), case


# --- Ctrl-C while the console script starts ------------------------------------------------------------------------

def test_console_script_enters_through_the_launcher():
    setup = configparser.ConfigParser()
    setup.read(REPO / 'setup.cfg')
    assert setup['options.entry_points']['console_scripts'].strip() == 'timm-sesk = _timm_sesk_launcher:main'
    assert '_timm_sesk_launcher' in setup['options']['py_modules'].split()
    code = 'import sys, _timm_sesk_launcher; print(sorted({"timm_sesk", "torch", "timm"} & set(sys.modules)))'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == '[]', result.stderr  # it can take Ctrl-C before anything heavy loads


@pytest.mark.parametrize('delay', [0.3, 1.0])
def test_ctrl_c_while_the_console_script_starts_ends_it_quietly(delay):
    """The console script (its launcher, as pip's wrapper calls it) imports torch and timm for seconds before the
    command runs; SIGINT arrives during those imports."""
    process = subprocess.Popen(
        [sys.executable, '-c', 'import sys; from _timm_sesk_launcher import main; sys.exit(main())', 'list'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS='1'))
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    # Ended by SIGINT (the launcher's default action while importing; a shell reports it as 130), or 130 from the
    # command. Neither a traceback, nor a command that runs on: some imports swallow a KeyboardInterrupt.
    assert process.returncode in (130, -signal.SIGINT) and err == '', (process.returncode, err)


@pytest.mark.parametrize('error, code', [
    (CheckpointReadError('cannot read checkpoint x.pth: it holds a list,\nnot weights'), 1),
    (ImageNotFoundError('no such image file: x.png'), 2),
    (KeyError('a bug, not a failure the table knows'), None),
])
def test_library_errors_become_one_line_with_their_status(error, code, capsys):
    assert report(error) == code
    err = capsys.readouterr().err
    if code is None:
        assert err == ''  # main re-raises it: a bug keeps its traceback
    else:
        assert err.count('\n') == 1 and err.startswith(f'timm-sesk: error: {str(error).split()[0]}')


# --- text from outside reaches the terminal harmless ----------------------------------------------------------------

@pytest.mark.parametrize('text, shown', [
    ('\x1b[1mdo those steps only if you trust the source\x1b[0m', 'do those steps only if you trust the source'),
    ('a\x1b]52;c;cHduZWQ=\x07b', 'a\\x1b]52;c;cHduZWQ=\\x07b'),  # OSC 52: writes the clipboard
    ('cat\x1b[2J\x1b[H', 'cat'),  # clears the screen
    ('txt.exe\u202egnp', 'txt.exe\\u202egnp'),  # a right-to-left override reorders what follows
    ('line\nbreak\ttab\x00', 'line\\x0abreak\\x09tab\\x00'),
    ('chat noir, 猫, ünïcödé', 'chat noir, 猫, ünïcödé'),
])
def test_terminal_text_removes_escape_sequences_and_shows_control_characters(text, shown):
    assert terminal_text(text) == shown


def test_an_error_line_carries_no_escape_sequence(capsys):
    """torch 2.6's weights_only message is bold (ANSI codes); a file name may hold anything."""
    error = CheckpointReadError('cannot read checkpoint \x1b]0;x\x07.pth: Weights only load failed. \x1b[1mdo those '
                                'steps only if you trust the source of the checkpoint\x1b[0m.')
    assert report(error) == 1
    line = capsys.readouterr().err
    assert line == ('timm-sesk: error: cannot read checkpoint \\x1b]0;x\\x07.pth: Weights only load failed. do those '
                    'steps only if you trust the source of the checkpoint.. Pass a .safetensors file or a PyTorch '
                    'state dict (a timm train.py checkpoint works)\n')
