// Renders a model's chat template (tokenizer_config.json "chat_template") the way transformers'
// apply_chat_template(..., tokenize=False) does: Jinja with trim_blocks/lstrip_blocks, given
// `messages`, `tools`, `documents`, `add_generation_prompt`, the named special tokens
// (bos_token, eos_token, ...) and any extra template kwargs (e.g. enable_thinking).
import { Template } from '@huggingface/jinja';

import type { TextTokenizer } from './tokenizer.js';

export interface ChatMessage {
  role: string;
  /** A string, null (assistant tool calls), or a list of content parts; passed to the template as is. */
  content?: unknown;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn opener. transformers' default is false. */
  addGenerationPrompt?: boolean;
  /** Tool (function) schemas; absent means Python None, which templates test with `if tools`. */
  tools?: readonly unknown[] | null;
  documents?: readonly unknown[] | null;
  /** Extra template variables (SGLang's chat_template_kwargs), e.g. {enable_thinking: false}. */
  extra?: Readonly<Record<string, unknown>>;
}

/** Drops undefined fields so the template sees them as missing keys, like an absent Python dict key. */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? null)) as unknown;
}

export class ChatTemplate {
  private readonly template: Template;

  /**
   * @param source the Jinja template text
   * @param specialTokens named special tokens exposed to the template (bos_token, eos_token, ...)
   */
  constructor(
    readonly source: string,
    private readonly specialTokens: Readonly<Record<string, string | undefined>> = {},
  ) {
    // Parsed once; rendering is per request.
    this.template = new Template(source);
  }

  /** Uses the tokenizer's chat template and special tokens; throws if the model has no template. */
  static fromTokenizer(tokenizer: TextTokenizer): ChatTemplate {
    if (tokenizer.chatTemplate === undefined) {
      throw new Error('this model has no chat template (tokenizer_config.json has no chat_template)');
    }
    return new ChatTemplate(tokenizer.chatTemplate, tokenizer.specialTokens);
  }

  render(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    const context: Record<string, unknown> = {};
    for (const [name, token] of Object.entries(this.specialTokens)) {
      if (token !== undefined) context[name] = token;
    }
    Object.assign(context, options.extra ?? {});
    // Python passes None for absent tools/documents: null here (undefined would fail `is none`).
    context.messages = plain(messages);
    context.tools = options.tools == null ? null : plain(options.tools);
    context.documents = options.documents == null ? null : plain(options.documents);
    context.add_generation_prompt = options.addGenerationPrompt ?? false;
    return this.template.render(context);
  }
}

/** One-shot helper: renders `source` for `messages` (parses the template each call). */
export function renderChatTemplate(
  source: string,
  messages: readonly ChatMessage[],
  options: ChatTemplateOptions & { specialTokens?: Readonly<Record<string, string | undefined>> } = {},
): string {
  return new ChatTemplate(source, options.specialTokens).render(messages, options);
}
