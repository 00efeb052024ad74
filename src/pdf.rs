//! A small PDF writer for the documents the box hands out (a conversation for a dispute,
//! an order's receipt): A4 pages of wrapped text in DejaVu Sans, which covers Latin,
//! Uzbek Latin (o‘ g‘ ʼ) and Cyrillic. The font is embedded (subset to the glyphs used),
//! with a ToUnicode map so the text can be searched and copied (and `pdftotext` reads it).
//!
//! No shaping: each character is one glyph, which is right for the scripts the shop
//! writes in. Characters the font lacks print as its missing-glyph box but still copy
//! as themselves.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::LazyLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Content, Filter, Name, Pdf, Rect, Ref, Str, TextStr};

/// DejaVu Sans (fonts-dejavu-core; licence in assets/fonts/LICENSE-DejaVu.txt).
static REGULAR: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf");

struct FontFile {
    data: &'static [u8],
    face: ttf_parser::Face<'static>,
    /// PostScript name in the PDF (a subset's name carries a six-letter tag).
    name: &'static str,
    units: f32,
    ascent: f32,
    descent: f32,
    cap_height: f32,
    bbox: [f32; 4],
    /// Advance of each glyph, in font units.
    advances: Vec<u16>,
}

impl FontFile {
    fn load(data: &'static [u8], name: &'static str) -> FontFile {
        let face = ttf_parser::Face::parse(data, 0).expect("the embedded font parses");
        let units = face.units_per_em() as f32;
        let b = face.global_bounding_box();
        let advances = (0..face.number_of_glyphs())
            .map(|g| face.glyph_hor_advance(ttf_parser::GlyphId(g)).unwrap_or(0))
            .collect();
        FontFile {
            data,
            face: face.clone(),
            name,
            units,
            ascent: face.ascender() as f32,
            descent: face.descender() as f32,
            cap_height: face.capital_height().unwrap_or(face.ascender()) as f32,
            bbox: [
                b.x_min as f32,
                b.y_min as f32,
                b.x_max as f32,
                b.y_max as f32,
            ],
            advances,
        }
    }

    fn glyph(&self, c: char) -> u16 {
        self.face.glyph_index(c).map(|g| g.0).unwrap_or(0)
    }

    /// Width of glyph `g` at `size` points.
    fn width(&self, g: u16, size: f32) -> f32 {
        self.advances.get(g as usize).copied().unwrap_or(0) as f32 * size / self.units
    }

    /// Scales font units to the PDF's 1000-unit glyph space.
    fn pdf_units(&self, v: f32) -> f32 {
        v * 1000.0 / self.units
    }
}

static FONTS: LazyLock<[FontFile; 2]> = LazyLock::new(|| {
    [
        FontFile::load(REGULAR, "DejaVuSans"),
        FontFile::load(BOLD, "DejaVuSans-Bold"),
    ]
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Regular = 0,
    Bold = 1,
}

/// A4 in points, and the margins.
const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 50.0;
const FOOTER: f32 = 30.0;

enum Op {
    Text {
        x: f32,
        y: f32,
        style: Style,
        size: f32,
        gray: f32,
        glyphs: Vec<u16>,
    },
    Rule {
        y: f32,
    },
    Image {
        index: usize,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

/// A picture ready for the PDF: JPEG bytes as they are (DCTDecode), or decoded pixels
/// with an optional alpha mask.
enum Picture {
    Jpeg {
        data: Vec<u8>,
        components: u8,
    },
    Pixels {
        rgb: Vec<u8>,
        alpha: Option<Vec<u8>>,
    },
}

struct Image {
    width: u32,
    height: u32,
    picture: Picture,
}

/// Width, height and colour components of a baseline or progressive JPEG (its SOF marker).
fn jpeg_info(b: &[u8]) -> Option<(u32, u32, u8)> {
    let mut i = 2;
    while i + 9 < b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
            return Some((w, h, b[i + 9]));
        }
        i += 2 + len;
    }
    None
}

/// Decodes a PNG to 8-bit RGB plus alpha (when it has one).
fn png_pixels(b: &[u8]) -> Option<(u32, u32, Picture)> {
    let mut d = png::Decoder::new(std::io::Cursor::new(b));
    d.set_transformations(png::Transformations::normalize_to_color8());
    let mut r = d.read_info().ok()?;
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).ok()?;
    let px = &buf[..info.buffer_size()];
    let (mut rgb, mut alpha) = (Vec::new(), Vec::new());
    for chunk in match info.color_type {
        png::ColorType::Rgb => px.chunks(3),
        png::ColorType::Rgba => px.chunks(4),
        png::ColorType::Grayscale => px.chunks(1),
        png::ColorType::GrayscaleAlpha => px.chunks(2),
        png::ColorType::Indexed => return None,
    } {
        match chunk {
            [r, g, b] => rgb.extend([*r, *g, *b]),
            [r, g, b, a] => {
                rgb.extend([*r, *g, *b]);
                alpha.push(*a);
            }
            [v] => rgb.extend([*v, *v, *v]),
            [v, a] => {
                rgb.extend([*v, *v, *v]);
                alpha.push(*a);
            }
            _ => return None,
        }
    }
    let alpha = (!alpha.is_empty()).then_some(alpha);
    Some((info.width, info.height, Picture::Pixels { rgb, alpha }))
}

/// A document being laid out, top to bottom; pages break by themselves.
pub struct Document {
    title: String,
    footer: String,
    pages: Vec<Vec<Op>>,
    y: f32,
    /// Per font, the characters behind each glyph used (for the ToUnicode map).
    used: [BTreeMap<u16, char>; 2],
    images: Vec<Image>,
}

/// Options of a run of text.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub style: Style,
    pub size: f32,
    /// 0 black .. 1 white.
    pub gray: f32,
    /// Left indent in points.
    pub indent: f32,
}

impl Run {
    pub const BODY: Run = Run {
        style: Style::Regular,
        size: 10.0,
        gray: 0.0,
        indent: 0.0,
    };

    pub fn bold(mut self) -> Run {
        self.style = Style::Bold;
        self
    }

    pub fn size(mut self, s: f32) -> Run {
        self.size = s;
        self
    }

    pub fn gray(mut self, g: f32) -> Run {
        self.gray = g;
        self
    }

    pub fn indent(mut self, i: f32) -> Run {
        self.indent = i;
        self
    }
}

impl Document {
    /// `title` goes in the document information; `footer` on every page, with
    /// "page / pages".
    pub fn new(title: &str, footer: &str) -> Document {
        Document {
            title: title.to_string(),
            footer: footer.to_string(),
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
            used: [BTreeMap::new(), BTreeMap::new()],
            images: Vec::new(),
        }
    }

    /// Places a PNG or JPEG picture at the left margin, at most `max_w` × `max_h` points
    /// with its proportions kept. Returns false (and places nothing) for bytes that are
    /// neither, so a bad logo never stops a document.
    pub fn image(&mut self, bytes: &[u8], max_w: f32, max_h: f32) -> bool {
        let decoded = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            jpeg_info(bytes).map(|(w, h, components)| {
                (
                    w,
                    h,
                    Picture::Jpeg {
                        data: bytes.to_vec(),
                        components,
                    },
                )
            })
        } else {
            png_pixels(bytes)
        };
        let Some((width, height, picture)) = decoded.filter(|(w, h, _)| *w > 0 && *h > 0) else {
            return false;
        };
        let scale = (max_w / width as f32).min(max_h / height as f32);
        let (w, h) = (width as f32 * scale, height as f32 * scale);
        self.room(h);
        self.y -= h;
        let index = self.images.len();
        self.images.push(Image {
            width,
            height,
            picture,
        });
        let y = self.y;
        self.pages.last_mut().expect("a page").push(Op::Image {
            index,
            x: MARGIN,
            y,
            w,
            h,
        });
        true
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = PAGE_H - MARGIN;
    }

    /// Makes room for `h` points, breaking the page when they do not fit.
    fn room(&mut self, h: f32) {
        if self.y - h < MARGIN + FOOTER {
            self.new_page();
        }
    }

    /// Vertical space.
    pub fn gap(&mut self, h: f32) {
        self.y -= h;
        if self.y < MARGIN + FOOTER {
            self.new_page();
        }
    }

    /// Keeps the next `h` points together (a heading with its first line).
    pub fn keep(&mut self, h: f32) {
        self.room(h);
    }

    /// A thin horizontal line across the text width.
    pub fn rule(&mut self) {
        self.room(6.0);
        self.y -= 3.0;
        let y = self.y;
        self.pages.last_mut().expect("a page").push(Op::Rule { y });
        self.y -= 3.0;
    }

    fn glyphs(&mut self, style: Style, s: &str) -> Vec<u16> {
        let font = &FONTS[style as usize];
        s.chars()
            .filter(|c| !c.is_control())
            .map(|c| {
                let g = font.glyph(c);
                if g != 0 {
                    self.used[style as usize].entry(g).or_insert(c);
                }
                g
            })
            .collect()
    }

    #[cfg(test)]
    fn measure(style: Style, size: f32, s: &str) -> f32 {
        let font = &FONTS[style as usize];
        s.chars().map(|c| font.width(font.glyph(c), size)).sum()
    }

    /// Wraps `text` to the page width (explicit line breaks kept) and writes it.
    pub fn text(&mut self, text: &str, run: Run) {
        let width = PAGE_W - 2.0 * MARGIN - run.indent;
        let leading = run.size * 1.35;
        for para in text.split('\n') {
            for line in wrap(para, run.style, run.size, width) {
                self.room(leading);
                self.y -= leading;
                let glyphs = self.glyphs(run.style, &line);
                let y = self.y + (leading - run.size) / 2.0;
                self.pages.last_mut().expect("a page").push(Op::Text {
                    x: MARGIN + run.indent,
                    y,
                    style: run.style,
                    size: run.size,
                    gray: run.gray,
                    glyphs,
                });
            }
        }
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The finished file.
    pub fn finish(mut self) -> Vec<u8> {
        // Page footers first, so their glyphs are in the subsets.
        let n = self.pages.len();
        let mut footers = Vec::with_capacity(n);
        for i in 0..n {
            let t = format!("{}    {} / {}", self.footer, i + 1, n);
            footers.push(self.glyphs(Style::Regular, &t));
        }
        let mut alloc = Ref::new(1);
        let mut next = || alloc.bump();
        let catalog = next();
        let tree = next();
        let info = next();
        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        pdf.document_info(info)
            .title(TextStr(&self.title))
            .producer(TextStr("crm"));

        // One Type0 font per style, each subset to its glyphs; new glyph ids are the CIDs.
        let mut remaps = Vec::new();
        let mut font_refs = Vec::new();
        for (i, font) in FONTS.iter().enumerate() {
            let mut remap = subsetter::GlyphRemapper::new();
            for g in self.used[i].keys() {
                remap.remap(*g);
            }
            let type0 = next();
            if self.used[i].is_empty() {
                remaps.push(remap);
                font_refs.push(None);
                continue;
            }
            let cid = next();
            let descriptor = next();
            let cmap_ref = next();
            let file_ref = next();
            let subset =
                subsetter::subset(font.data, 0, &remap).unwrap_or_else(|_| font.data.to_vec());
            // The six-letter tag a subset's name must carry (PDF 9.6.4); any letters do.
            let base = format!("CRMAA{}+{}", (b'A' + i as u8) as char, font.name);
            let info = SystemInfo {
                registry: Str(b"Adobe"),
                ordering: Str(b"Identity"),
                supplement: 0,
            };
            pdf.type0_font(type0)
                .base_font(Name(base.as_bytes()))
                .encoding_predefined(Name(b"Identity-H"))
                .descendant_font(cid)
                .to_unicode(cmap_ref);
            let mut widths: Vec<(u16, f32)> = self.used[i]
                .keys()
                .filter_map(|g| {
                    remap
                        .get(*g)
                        .map(|n| (n, font.pdf_units(font.advances[*g as usize] as f32)))
                })
                .collect();
            widths.sort_by_key(|(n, _)| *n);
            {
                let mut c = pdf.cid_font(cid);
                c.subtype(CidFontType::Type2)
                    .base_font(Name(base.as_bytes()))
                    .system_info(info)
                    .font_descriptor(descriptor)
                    .default_width(
                        font.pdf_units(font.advances.first().copied().unwrap_or(0) as f32),
                    )
                    .cid_to_gid_map_predefined(Name(b"Identity"));
                let mut w = c.widths();
                for (g, wd) in &widths {
                    w.consecutive(*g, [*wd]);
                }
            }
            let [x0, y0, x1, y1] = font.bbox;
            pdf.font_descriptor(descriptor)
                .name(Name(base.as_bytes()))
                .flags(FontFlags::NON_SYMBOLIC)
                .bbox(Rect::new(
                    font.pdf_units(x0),
                    font.pdf_units(y0),
                    font.pdf_units(x1),
                    font.pdf_units(y1),
                ))
                .italic_angle(0.0)
                .ascent(font.pdf_units(font.ascent))
                .descent(font.pdf_units(font.descent))
                .cap_height(font.pdf_units(font.cap_height))
                .stem_v(if i == 1 { 140.0 } else { 80.0 })
                .font_file2(file_ref);
            let mut cmap = pdf_writer::types::UnicodeCmap::<u16>::new(Name(b"Custom"), info);
            for (g, ch) in &self.used[i] {
                if let Some(n) = remap.get(*g) {
                    cmap.pair(n, *ch);
                }
            }
            let cmap = cmap.finish();
            pdf.cmap(cmap_ref, &cmap);
            let packed = deflate(&subset);
            pdf.stream(file_ref, &packed)
                .filter(Filter::FlateDecode)
                .pair(Name(b"Length1"), subset.len() as i32);
            remaps.push(remap);
            font_refs.push(Some(type0));
        }

        // Pictures: one XObject each (and a soft mask for a PNG's alpha).
        let mut image_refs = Vec::with_capacity(self.images.len());
        for img in std::mem::take(&mut self.images) {
            let id = next();
            image_refs.push(id);
            match img.picture {
                Picture::Jpeg { data, components } => {
                    let mut x = pdf.image_xobject(id, &data);
                    x.filter(Filter::DctDecode);
                    x.width(img.width as i32)
                        .height(img.height as i32)
                        .bits_per_component(8);
                    match components {
                        1 => x.color_space().device_gray(),
                        4 => x.color_space().device_cmyk(),
                        _ => x.color_space().device_rgb(),
                    };
                }
                Picture::Pixels { rgb, alpha } => {
                    let mask = alpha.map(|a| {
                        let m = next();
                        let packed = deflate(&a);
                        let mut x = pdf.image_xobject(m, &packed);
                        x.filter(Filter::FlateDecode);
                        x.width(img.width as i32)
                            .height(img.height as i32)
                            .bits_per_component(8);
                        x.color_space().device_gray();
                        m
                    });
                    let packed = deflate(&rgb);
                    let mut x = pdf.image_xobject(id, &packed);
                    x.filter(Filter::FlateDecode);
                    x.width(img.width as i32)
                        .height(img.height as i32)
                        .bits_per_component(8);
                    x.color_space().device_rgb();
                    if let Some(m) = mask {
                        x.s_mask(m);
                    }
                }
            }
        }

        let mut kids = Vec::with_capacity(n);
        let encode = |remap: &subsetter::GlyphRemapper, glyphs: &[u16]| -> Vec<u8> {
            let mut b = Vec::with_capacity(glyphs.len() * 2);
            for g in glyphs {
                let n = remap.get(*g).unwrap_or(0);
                b.extend_from_slice(&n.to_be_bytes());
            }
            b
        };
        let pages = std::mem::take(&mut self.pages);
        for (i, ops) in pages.into_iter().enumerate() {
            let page = next();
            let contents = next();
            kids.push(page);
            let mut c = Content::new();
            for op in &ops {
                match op {
                    Op::Text {
                        x,
                        y,
                        style,
                        size,
                        gray,
                        glyphs,
                    } => {
                        let bytes = encode(&remaps[*style as usize], glyphs);
                        c.set_fill_gray(*gray);
                        c.begin_text();
                        c.set_font(Name(font_name(*style)), *size);
                        c.next_line(*x, *y);
                        c.show(Str(&bytes));
                        c.end_text();
                    }
                    Op::Rule { y } => {
                        c.set_stroke_gray(0.6);
                        c.set_line_width(0.5);
                        c.move_to(MARGIN, *y);
                        c.line_to(PAGE_W - MARGIN, *y);
                        c.stroke();
                    }
                    Op::Image { index, x, y, w, h } => {
                        c.save_state();
                        c.transform([*w, 0.0, 0.0, *h, *x, *y]);
                        c.x_object(Name(format!("Im{index}").as_bytes()));
                        c.restore_state();
                    }
                }
            }
            let bytes = encode(&remaps[0], &footers[i]);
            c.set_fill_gray(0.4);
            c.begin_text();
            c.set_font(Name(font_name(Style::Regular)), 8.0);
            c.next_line(MARGIN, MARGIN / 2.0);
            c.show(Str(&bytes));
            c.end_text();
            let raw = c.finish();
            let packed = deflate(&raw);
            pdf.stream(contents, &packed).filter(Filter::FlateDecode);
            let mut p = pdf.page(page);
            p.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
                .parent(tree)
                .contents(contents);
            let mut res = p.resources();
            if !image_refs.is_empty() {
                let mut xs = res.x_objects();
                for (i, r) in image_refs.iter().enumerate() {
                    xs.pair(Name(format!("Im{i}").as_bytes()), *r);
                }
            }
            let mut fonts = res.fonts();
            for (s, r) in [Style::Regular, Style::Bold].iter().zip(&font_refs) {
                if let Some(r) = r {
                    fonts.pair(Name(font_name(*s)), *r);
                }
            }
        }
        pdf.pages(tree)
            .kids(kids.iter().copied())
            .count(kids.len() as i32);
        pdf.finish()
    }
}

fn font_name(s: Style) -> &'static [u8] {
    match s {
        Style::Regular => b"F1",
        Style::Bold => b"F2",
    }
}

fn deflate(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// Greedy line breaking at spaces; a word wider than the line is cut by characters.
fn wrap(text: &str, style: Style, size: f32, width: f32) -> Vec<String> {
    let font = &FONTS[style as usize];
    let cw = |c: char| font.width(font.glyph(c), size);
    let space = cw(' ');
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut cur_w = 0.0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let w: f32 = word.chars().map(cw).sum();
        if w > width {
            // Fill the line, then whole lines, by characters.
            if !cur.is_empty() {
                cur.push(' ');
                cur_w += space;
            }
            for ch in word.chars() {
                let c = cw(ch);
                if cur_w + c > width && !cur.is_empty() {
                    lines.push(std::mem::take(&mut cur));
                    cur_w = 0.0;
                }
                cur.push(ch);
                cur_w += c;
            }
        } else if cur.is_empty() {
            cur.push_str(word);
            cur_w = w;
        } else if cur_w + space + w <= width {
            cur.push(' ');
            cur.push_str(word);
            cur_w += space + w;
        } else {
            lines.push(std::mem::replace(&mut cur, word.to_string()));
            cur_w = w;
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    for l in &mut lines {
        l.truncate(l.trim_end().len());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, color: png::ColorType) -> Vec<u8> {
        let mut out = Vec::new();
        let channels = match color {
            png::ColorType::Rgba => 4,
            png::ColorType::Grayscale => 1,
            _ => 3,
        };
        {
            let mut e = png::Encoder::new(&mut out, w, h);
            e.set_color(color);
            e.set_depth(png::BitDepth::Eight);
            let mut wr = e.write_header().unwrap();
            wr.write_image_data(&vec![128u8; (w * h * channels) as usize])
                .unwrap();
        }
        out
    }

    #[test]
    fn pictures_are_placed_with_their_proportions_and_bad_bytes_are_skipped() {
        let mut d = Document::new("t", "f");
        assert!(d.image(&png(40, 20, png::ColorType::Rgba), 100.0, 100.0));
        assert!(d.image(&png(10, 30, png::ColorType::Grayscale), 100.0, 30.0));
        // A JPEG is passed through: only its SOF header is read.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0];
        jpeg.extend([0xFF, 0xC0, 0, 11, 8, 0, 50, 0, 100, 3, 0, 0, 0, 0]);
        assert_eq!(jpeg_info(&jpeg), Some((100, 50, 3)));
        assert!(d.image(&jpeg, 50.0, 50.0));
        assert!(!d.image(b"not a picture", 50.0, 50.0));
        assert!(!d.image(&[0xFF, 0xD8, 0xFF, 0x00], 50.0, 50.0));
        let sizes: Vec<(f32, f32)> = d.pages[0]
            .iter()
            .filter_map(|op| match op {
                Op::Image { w, h, .. } => Some((*w, *h)),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, vec![(100.0, 50.0), (10.0, 30.0), (50.0, 25.0)]);
        let pdf = d.finish();
        let text = String::from_utf8_lossy(&pdf);
        assert_eq!(
            text.matches("/Subtype /Image").count(),
            4,
            "3 pictures and 1 mask"
        );
        assert!(text.contains("/SMask") && text.contains("/DCTDecode"));
    }

    #[test]
    fn long_words_and_lines_wrap_within_the_width() {
        let w = 200.0;
        let text = format!("{} short words here", "x".repeat(300));
        for l in wrap(&text, Style::Regular, 10.0, w) {
            assert!(
                Document::measure(Style::Regular, 10.0, &l) <= w + 0.01,
                "{l}"
            );
        }
        assert_eq!(wrap("", Style::Regular, 10.0, w), vec![String::new()]);
    }

    #[test]
    fn uzbek_and_cyrillic_letters_have_glyphs() {
        for c in "o‘g‘ʼ Ўқғҳ Привет".chars().filter(|c| *c != ' ') {
            assert_ne!(FONTS[0].glyph(c), 0, "{c}");
            assert_ne!(FONTS[1].glyph(c), 0, "{c}");
        }
    }

    #[test]
    fn a_long_document_breaks_pages_and_starts_as_a_pdf() {
        let mut d = Document::new("t", "footer");
        for i in 0..200 {
            d.text(&format!("line {i}"), Run::BODY);
        }
        assert!(d.page_count() >= 4);
        let b = d.finish();
        assert!(b.starts_with(b"%PDF-"));
    }
}
