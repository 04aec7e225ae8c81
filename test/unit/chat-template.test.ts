// Chat templates rendered with @huggingface/jinja against transformers 5.17 apply_chat_template
// (tokenize=False): the qwen2-tiny golden chat_prompt, llama31's classify texts, and prompts
// rendered by transformers for multi-turn conversations.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ChatTemplate, renderChatTemplate, type ChatMessage } from '../../src/engine/chat-template.js';
import { TextTokenizer } from '../../src/engine/tokenizer.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

async function load(dir: string): Promise<TextTokenizer> {
  assert.ok(existsSync(join(ROOT, dir, 'tokenizer.json')), `${dir}/tokenizer.json is missing: run node dist/scripts/setup-test-fixtures.js`);
  return TextTokenizer.load(join(ROOT, dir));
}
const QWEN = 'test/fixtures/models/qwen2-tiny';
const LLAMA = 'test/fixtures/models/llama31-reward-tiny';

const FRANCE: ChatMessage[] = [{ role: 'user', content: 'What is the capital of France?' }];
const MULTI_TURN: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: '  Bye  ' },
];
const THINKING: ChatMessage[] = [
  { role: 'user', content: '2+2?' },
  { role: 'assistant', content: '<think>\nadd\n</think>\n\n4' },
];

describe('chat template', () => {
  it('qwen2-tiny: matches the golden chat_prompt', async () => {
    const tok = await load(QWEN);
    const golden = JSON.parse(readFileSync(join(ROOT, QWEN, 'golden.json'), 'utf8')) as { chat_prompt: string };
    const prompt = ChatTemplate.fromTokenizer(tok).render(FRANCE, { addGenerationPrompt: true });
    assert.equal(prompt, golden.chat_prompt);
    assert.equal(prompt, '<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n');
    // And its tokenization is the golden generate entry for that text.
    assert.deepEqual(tok.encode(prompt), [151644, 872, 198, 3838, 374, 279, 6722, 315, 9625, 30, 151645, 198, 151644, 77091, 198]);
  });

  it('qwen2-tiny: multi-turn, system message, thinking content, with and without generation prompt', async () => {
    const tpl = ChatTemplate.fromTokenizer(await load(QWEN));
    const mt =
      '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n' +
      '<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n  Bye  <|im_end|>\n';
    assert.equal(tpl.render(MULTI_TURN, { addGenerationPrompt: true }), mt + '<|im_start|>assistant\n');
    assert.equal(tpl.render(MULTI_TURN), mt);
    const th = '<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nadd\n</think>\n\n4<|im_end|>\n';
    assert.equal(tpl.render(THINKING, { addGenerationPrompt: true }), th + '<|im_start|>assistant\n');
    assert.equal(tpl.render(THINKING, { addGenerationPrompt: false }), th);
  });

  it('qwen2-tiny: extra kwargs reach the template (enable_thinking) and tools switch the system block on', async () => {
    const tpl = ChatTemplate.fromTokenizer(await load(QWEN));
    assert.equal(
      tpl.render(FRANCE, { addGenerationPrompt: true, extra: { enable_thinking: false } }),
      '<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );
    const tool = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } };
    const withTools = tpl.render(FRANCE, { addGenerationPrompt: true, tools: [tool] });
    assert.ok(withTools.startsWith('<|im_start|>system\n# Tools\n'));
    assert.ok(withTools.includes('"name": "get_weather"'));
    // No tools (undefined or null) renders as if tools were None.
    assert.equal(tpl.render(FRANCE, { tools: null }), tpl.render(FRANCE));
  });

  it('llama31-reward-tiny: bos_token and trim in the template; classify texts are its rendering', async () => {
    const tok = await load(LLAMA);
    const tpl = ChatTemplate.fromTokenizer(tok);
    assert.equal(
      tpl.render(FRANCE, { addGenerationPrompt: true }),
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    assert.equal(
      tpl.render(MULTI_TURN),
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>',
    );
    const golden = JSON.parse(readFileSync(join(ROOT, LLAMA, 'golden.json'), 'utf8')) as {
      classify: Array<{ text: string; input_ids: number[] }>;
    };
    const question = 'What is the range of the numeric output of a sigmoid node in a neural network?';
    const answers = ['The output of a sigmoid node is bounded between -1 and 1.', 'The output of a sigmoid node is bounded between 0 and 1.'];
    answers.forEach((answer, i) => {
      const text = tpl.render([
        { role: 'user', content: question },
        { role: 'assistant', content: answer },
      ]);
      assert.equal(text, golden.classify[i]?.text);
      assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), golden.classify[i]?.input_ids);
    });
  });

  it('a model without a chat template is reported, not guessed', async () => {
    const tok = await load('src/builtin/stories260k');
    assert.equal(tok.chatTemplate, undefined);
    assert.throws(() => ChatTemplate.fromTokenizer(tok), /no chat template/);
  });

  it('renderChatTemplate renders a template given inline', () => {
    const src = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
    assert.equal(
      renderChatTemplate(src, FRANCE, { addGenerationPrompt: true, specialTokens: { bos_token: '<s>' } }),
      '<s>[user] What is the capital of France?\n[assistant]',
    );
  });
});
